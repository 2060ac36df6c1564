"""COCO 2017 and CrowdPose person keypoints (COCO-style json) -> records.

Ground truth: person category only, crowd and keypoint-less people skipped (by design, as
HRNet: nothing to learn from, not a problem); the box is first "cleaned" like HRNet's (clipped
to the image, ``x2 = x1 + w - 1``) then turned into centre/scale. With a detection-results
file the people are the detected boxes instead (``detections.py``).

A test split comes as an image-info file (COCO's ``image_info_test-dev2017.json``): ``images``
and ``categories`` but no ``annotations``. It is read only with detections, and the result
has ``has_ground_truth=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldnet.data.keypoints import COCO, CROWDPOSE, KeypointSet
from ldnet.data.transforms import box_to_center_scale
from ldnet.numbers import is_finite_number

from .detections import read_detections
from .jsonfiles import load_json, number_list, schema_error
from .records import PersonRecord, PoseAnnotations, ProblemLog, drop_joints_outside


def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    keypoint_set: KeypointSet = COCO,
    input_size: tuple[int, int] = (256, 192),
    detections: str | Path | None = None,
    score_threshold: float = 0.0,
    check_images: bool = True,
    strict: bool = False,
) -> PoseAnnotations:
    """COCO-style person keypoints (COCO 2017, CrowdPose) -> records.

    With ``detections`` (a COCO detection-results file) the people are the detected boxes
    with ``score >= score_threshold`` and no ground truth; otherwise the ground-truth boxes.
    ``input_size`` (height, width) sets the aspect ratio of the boxes.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    data = load_json(annotation_file)
    log = ProblemLog(annotation_file, strict)
    has_ground_truth = _check_header(data, annotation_file, keypoint_set, detections)

    images: dict[int, Path] = {}
    sizes: dict[int, tuple[int, int]] = {}
    crowd_index: dict[int, float] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise schema_error(annotation_file, f"images[{i}] has no 'id' or 'file_name'")
        image_id = image["id"]
        images[image_id] = image_dir / str(image["file_name"])
        if is_finite_number(image.get("width")) and is_finite_number(image.get("height")):
            sizes[image_id] = (int(image["width"]), int(image["height"]))
        if is_finite_number(image.get("crowdIndex")):
            crowd_index[image_id] = float(image["crowdIndex"])
    missing = _check_images(images, log) if check_images else set()

    stats = {"images": len(images), "people": 0, "people_with_keypoints": 0, "crowd": 0}
    records = _ground_truth_records(
        data.get("annotations", []),
        annotation_file,
        keypoint_set=keypoint_set,
        input_size=input_size,
        images=images,
        sizes=sizes,
        missing=missing,
        stats=stats,
        log=log,
        count_only=detections is not None,
    )
    if detections is not None:
        records = read_detections(
            Path(detections),
            images=images,
            missing=missing,
            keypoint_set=keypoint_set,
            input_size=input_size,
            score_threshold=score_threshold,
            log=log,
        )
    return PoseAnnotations(
        dataset=keypoint_set.name,
        keypoint_set=keypoint_set,
        annotation_file=annotation_file,
        image_dir=image_dir,
        records=records,
        has_ground_truth=has_ground_truth,
        problems=log.problems,
        stats=stats,
        image_files=images,
        crowd_index=crowd_index,
    )


def read_crowdpose(annotation_file: str | Path, image_dir: str | Path, **kwargs) -> PoseAnnotations:
    """CrowdPose (14 joints, COCO-style json with ``crowdIndex`` per image)."""
    return read_coco(annotation_file, image_dir, keypoint_set=CROWDPOSE, **kwargs)


def _check_header(data, path: Path, keypoint_set: KeypointSet, detections) -> bool:
    """Raise ``DataError`` unless ``data`` is a COCO-style file of ``keypoint_set``; return
    whether it holds ground truth (an image-info file has no ``annotations``)."""
    if not isinstance(data, dict):
        raise schema_error(path, "top level is not an object")
    if not isinstance(data.get("images"), list):
        raise schema_error(path, "no 'images' list")
    if "annotations" in data and not isinstance(data["annotations"], list):
        raise schema_error(path, "'annotations' is not a list")
    if "annotations" not in data and detections is None:
        raise schema_error(path, "no 'annotations' list; an image-info file needs a detection file")
    k = keypoint_set.num_joints
    for category in data.get("categories") or []:
        if not isinstance(category, dict) or category.get("id") != 1:
            continue
        names = category.get("keypoints")
        if isinstance(names, list) and len(names) != k:
            raise schema_error(
                path, f"the person category has {len(names)} keypoints, {keypoint_set.name} has {k}"
            )
    return "annotations" in data


def _check_images(images: dict[int, Path], log: ProblemLog) -> set[int]:
    missing = set()
    for image_id, path in images.items():
        if not path.is_file():
            missing.add(image_id)
            log.add(f"image {image_id} ({path.name})", "missing image")
    return missing


def _ground_truth_records(
    annotations: list,
    path: Path,
    *,
    keypoint_set: KeypointSet,
    input_size: tuple[int, int],
    images: dict[int, Path],
    sizes: dict[int, tuple[int, int]],
    missing: set[int],
    stats: dict[str, int],
    log: ProblemLog,
    count_only: bool,
) -> list[PersonRecord]:
    """The labelled, non-crowd people of ``annotations``; every person is counted in
    ``stats``. ``count_only`` (the people come from detections) only counts."""
    k = keypoint_set.num_joints
    records = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise schema_error(path, f"annotations[{i}] is not an object")
        if ann.get("category_id", 1) != 1:
            continue
        stats["people"] += 1
        ann_id = ann.get("id", i)
        image_id = ann.get("image_id")
        item = f"annotation {ann_id} (image {image_id})"
        keypoints = number_list(ann.get("keypoints"), 3 * k)
        if ann.get("keypoints") is not None and keypoints is None:
            log.add(item, f"'keypoints' is not a list of {3 * k} numbers")
            continue
        if keypoints is None:
            keypoints = np.zeros(3 * k)
        keypoints = keypoints.reshape(k, 3)
        has_keypoints = bool((keypoints[:, 2] > 0).any())
        stats["people_with_keypoints"] += has_keypoints
        if ann.get("iscrowd", 0):
            stats["crowd"] += 1
        if count_only or ann.get("iscrowd", 0) or not has_keypoints:
            continue  # crowd and keypoint-less people: by design (HRNet), not a problem
        if image_id not in images:
            log.add(item, "annotation names an unknown image id")
            continue
        if image_id in missing:
            continue
        box = number_list(ann.get("bbox"), 4)
        if box is None:
            log.add(item, "'bbox' is not 4 finite numbers")
            continue
        clean = _clean_box(box, sizes.get(image_id))
        if clean is None:
            log.add(item, f"invalid box {box.round(2).tolist()} (zero area)")
            continue
        joints = keypoints[:, :2].astype(np.float32)
        visible = (keypoints[:, 2] > 0).astype(np.float32)
        drop_joints_outside(joints, visible, sizes.get(image_id), item, log)
        center, scale = box_to_center_scale(clean, input_size)
        area = ann.get("area")
        records.append(
            PersonRecord(
                image_path=images[image_id],
                image_id=image_id,
                person_id=int(ann_id) if is_finite_number(ann_id) else i,
                center=center,
                scale=scale,
                box_xywh=clean.astype(np.float32),
                joints=joints,
                visible=visible,
                area=float(area) if is_finite_number(area) else float(box[2] * box[3]),
            )
        )
    return records


def _clean_box(box: np.ndarray, size: tuple[int, int] | None) -> np.ndarray | None:
    """HRNet's box sanitising: clip to the image, ``x2 = x1 + max(0, w - 1)``."""
    x, y, w, h = box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = x1 + max(0.0, w - 1), y1 + max(0.0, h - 1)
    if size is not None:
        x2, y2 = min(size[0] - 1.0, x2), min(size[1] - 1.0, y2)
    if w <= 0 or h <= 0 or x2 <= x1 or y2 <= y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1])
