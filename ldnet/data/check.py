"""`ldnet data check`: count what a split holds, find what is broken, and prove the codecs.

The codec round trip runs the test path on ground truth: joints -> crop (test geometry, no
augmentation) -> ``codec.encode`` -> ``codec.decode`` -> inverse crop -> image coordinates,
then scores the result with the official COCO evaluator (pycocotools ``COCOeval``) against the
ground truth with ground-truth boxes. A codec that loses half a pixel shows up here.
"""

from __future__ import annotations

import contextlib
import io
import sys

import numpy as np

from ldnet.datasets import dataset_kind

from .codecs import MSRAHeatmap
from .images import ImageError, read_image
from .readers import PoseAnnotations, Problem, load_json
from .transforms import affine_matrix, input_to_image, transform_points


def roundtrip_keypoints(
    annotations: PoseAnnotations, codec: MSRAHeatmap
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Round trip of the labelled people: (decoded (N, K, 2) image px, target weights (N, K),
    record indices). A weight of 0 on a labelled joint means the crop does not hold it."""
    indices = [i for i, r in enumerate(annotations.records) if r.has_keypoints]
    if not indices:
        k = annotations.keypoint_set.num_joints
        return np.zeros((0, k, 2)), np.zeros((0, k)), []
    records = [annotations.records[i] for i in indices]
    centers = np.stack([r.center for r in records])
    scales = np.stack([r.scale for r in records])
    joints = np.stack([r.joints for r in records])
    visible = np.stack([r.visible for r in records])
    crop_joints = transform_points(joints, affine_matrix(centers, scales, 0.0, codec.input_size))
    heatmaps, weights = codec.encode(crop_joints, visible)
    decoded, _ = codec.decode(heatmaps)
    return input_to_image(decoded, centers, scales, 0.0, codec.input_size), weights, indices


def coco_ground_truth(
    annotations: PoseAnnotations, unscored: dict[int, np.ndarray] | None = None
) -> dict:
    """The ground truth as a COCO dataset dict: the file itself for COCO / CrowdPose (areas
    and keypoint counts filled in where the file lacks them), built from records for MPII.

    ``unscored`` maps a person id to a (K,) mask of joints to mark unlabelled.
    """
    unscored = unscored or {}
    k = annotations.keypoint_set.num_joints
    if dataset_kind(annotations.dataset).scores_people:  # a COCO-style file
        data = load_json(annotations.annotation_file)
        for ann in data["annotations"]:
            ann.setdefault("iscrowd", 0)
            if "area" not in ann and isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4:
                ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
            if "num_keypoints" not in ann and isinstance(ann.get("keypoints"), list):
                ann["num_keypoints"] = int(sum(v > 0 for v in ann["keypoints"][2::3]))
            if ann.get("id") in unscored:
                flags = list(ann["keypoints"])
                for j in np.flatnonzero(unscored[ann["id"]]):
                    flags[3 * j : 3 * j + 3] = [0, 0, 0]
                ann["keypoints"] = flags
                ann["num_keypoints"] = int(sum(v > 0 for v in flags[2::3]))
        data.setdefault("categories", [{"id": 1, "name": "person"}])
        return data
    images, anns = {}, []
    for i, r in enumerate(annotations.records):
        images[r.image_id] = {"id": r.image_id, "file_name": r.image_path.name}
        vis = r.visible * ~unscored.get(r.person_id, np.zeros(k, bool))
        flat = np.concatenate([r.joints, vis[:, None] * 2], axis=1).ravel()
        anns.append(
            {
                "id": i + 1,
                "image_id": r.image_id,
                "category_id": 1,
                "bbox": [float(v) for v in r.box_xywh],
                # The MPII box is head-to-foot height squared: an OKS area for the round trip.
                "area": float(r.area),
                "iscrowd": 0,
                "keypoints": [float(v) for v in flat],
                "num_keypoints": int(vis.sum()),
            }
        )
    return {
        "images": list(images.values()),
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": [""] * k}],
    }


def coco_keypoint_ap(ground_truth: dict, results: list[dict], sigmas) -> dict[str, float]:
    """COCO keypoint AP/AR from pycocotools ``COCOeval`` with the given OKS sigmas."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    s = evaluator.stats
    return {"ap": float(s[0]), "ap50": float(s[1]), "ap75": float(s[2]), "ar": float(s[5])}


def roundtrip_report(annotations: PoseAnnotations, codecs: list[MSRAHeatmap]) -> dict:
    """Per codec: COCOeval ``ap`` (and ``ap50``, ``ap75``), ``mean_error_px`` and
    ``max_error_px``, and how many people and joints were scored.

    Labelled joints that fall outside the crop (a hip below a box that stops at the waist)
    cannot be held by any heatmap of that crop: that is the crop's loss, not the codec's.
    They are counted in ``joints_outside_crop`` and left out of ``ap`` and the errors;
    ``ap_with_crop_loss`` scores them too (decoded wherever the empty heatmap says).
    """
    report = {}
    for codec in codecs:
        decoded, weights, indices = roundtrip_keypoints(annotations, codec)
        records = [annotations.records[i] for i in indices]
        if not records:
            report[codec.name] = {"ap": None, "mean_error_px": None, "people": 0, "joints": 0}
            continue
        joints = np.stack([r.joints for r in records])
        labelled = np.stack([r.visible for r in records]) > 0
        held = labelled & (weights > 0)
        outside = {r.person_id: labelled[n] & ~held[n] for n, r in enumerate(records)}
        outside = {pid: mask for pid, mask in outside.items() if mask.any()}
        error = np.linalg.norm(decoded - joints, axis=-1)[held]
        results = [
            {
                "image_id": r.image_id,
                "category_id": 1,
                "keypoints": np.concatenate([decoded[n], np.ones((len(decoded[n]), 1))], axis=1)
                .ravel()
                .tolist(),
                "score": 1.0,
            }
            for n, r in enumerate(records)
        ]
        sigmas = annotations.keypoint_set.sigmas
        metrics = coco_keypoint_ap(coco_ground_truth(annotations, outside), results, sigmas)
        with_loss = coco_keypoint_ap(coco_ground_truth(annotations), results, sigmas)
        report[codec.name] = {
            "ap": metrics["ap"],
            "ap50": metrics["ap50"],
            "ap75": metrics["ap75"],
            "ap_with_crop_loss": with_loss["ap"],
            "mean_error_px": float(error.mean()),
            "max_error_px": float(error.max()),
            "people": len(records),
            "joints": int(held.sum()),
            "joints_outside_crop": int((labelled & ~held).sum()),
        }
    return report


def find_unreadable_images(annotations: PoseAnnotations, progress: bool = False) -> list[Problem]:
    """Decode every image that has a record; one problem per image that fails."""
    paths = {r.image_id: r.image_path for r in annotations.records}
    iterator = paths.items()
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="decoding images", unit="img", file=sys.stderr)
    problems = []
    for image_id, path in iterator:
        try:
            read_image(path)
        except ImageError as error:
            problems.append(Problem(f"image {image_id} ({path.name})", str(error)))
    return problems


def check(
    annotations: PoseAnnotations,
    codecs: list[MSRAHeatmap],
    *,
    decode_images: bool = True,
    progress: bool = False,
) -> dict:
    """Everything ``ldnet data check`` reports, as a JSON-ready dict.

    People on unreadable images are dropped before the round trip, so the AP reflects what
    a model could actually be scored on.
    """
    problems = list(annotations.problems)
    unreadable = find_unreadable_images(annotations, progress) if decode_images else []
    problems += unreadable
    if unreadable:
        bad = {p.item for p in unreadable}
        annotations.records = [
            r for r in annotations.records if f"image {r.image_id} ({r.image_path.name})" not in bad
        ]
    missing = sum(p.reason == "missing image" for p in problems)
    return {
        "dataset": annotations.dataset,
        "annotation_file": str(annotations.annotation_file),
        "image_dir": str(annotations.image_dir),
        "has_ground_truth": annotations.has_ground_truth,
        "images": annotations.stats.get("images", 0),
        "people": annotations.stats.get("people", 0),
        "people_with_keypoints": annotations.stats.get("people_with_keypoints", 0),
        "crowd_people": annotations.stats.get("crowd", 0),
        "samples": len(annotations.records),
        "missing_images": missing,
        "unreadable_images": len(unreadable),
        "invalid_boxes": sum(p.reason.startswith("invalid box") for p in problems),
        "ignored_joints": sum(p.action == "joint ignored" for p in problems),
        "problems": [p.as_dict() for p in problems],
        "roundtrip": roundtrip_report(annotations, codecs),
    }
