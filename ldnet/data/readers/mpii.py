"""MPII in the HRNet json layout -> records.

Each entry is one person: ``image``, ``center``, ``scale`` and, except in the test split,
``joints`` (16 x 2) and ``joints_vis``. HRNet's conventions: ``center`` and ``joints`` are
MATLAB 1-based and are made 0-based (``- 1``); before that the centre moves down by
``15 * scale`` px and the scale grows by 1.25 ("to avoid cropping limbs"). ``scale`` is the
box height / 200 and is used for both axes (MPII is trained square, 256x256).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldnet.data.images import image_size
from ldnet.data.keypoints import MPII
from ldnet.data.transforms import PADDING, PIXEL_STD
from ldnet.numbers import is_finite_number

from .jsonfiles import is_list_of_lists, load_json, number_list, schema_error
from .records import DataError, PersonRecord, PoseAnnotations, ProblemLog, drop_joints_outside


def read_mpii(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    input_size: tuple[int, int] = (256, 256),
    check_images: bool = True,
    strict: bool = False,
    **unused,
) -> PoseAnnotations:
    """MPII in the HRNet json layout (``image``, ``center``, ``scale``, ``joints``,
    ``joints_vis``) -> records, with HRNet's centre/scale adjustment and 1-based -> 0-based.

    ``input_size`` is accepted for symmetry; HRNet's MPII scale ignores the aspect ratio.
    A file without any ``joints`` (the test split) gives ``has_ground_truth=False``.
    """
    if unused.get("detections") is not None:
        raise DataError(f"{annotation_file}: MPII is tested with its own boxes, not detections")
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    data = load_json(annotation_file)
    log = ProblemLog(annotation_file, strict)
    k = MPII.num_joints
    if not isinstance(data, list):
        raise schema_error(annotation_file, "the HRNet MPII json is a list of people")
    records: list[PersonRecord] = []
    images: dict[int, Path] = {}
    image_ids: dict[str, int] = {}
    sizes: dict[int, tuple[int, int] | None] = {}
    missing: set[int] = set()
    stats = {"images": 0, "people": len(data), "people_with_keypoints": 0, "crowd": 0}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not {"image", "center", "scale"} <= entry.keys():
            raise schema_error(annotation_file, f"[{i}] lacks 'image', 'center' or 'scale'")
        name = str(entry["image"])
        if name not in image_ids:
            image_id = image_ids[name] = _mpii_image_id(name, len(image_ids))
            images[image_id] = image_dir / name
            if check_images:
                if images[image_id].is_file():
                    sizes[image_id] = image_size(images[image_id])
                else:
                    missing.add(image_id)
                    log.add(f"image {name}", "missing image")
                    sizes[image_id] = None
        image_id = image_ids[name]
        item = f"person {i} (image {name})"
        center = number_list(entry["center"], 2)
        scale = entry["scale"]
        if center is None or not is_finite_number(scale):
            log.add(item, "'center' is not 2 numbers or 'scale' not a number")
            continue
        if "joints" in entry:
            joints = number_list(
                sum(entry["joints"], []) if is_list_of_lists(entry["joints"]) else None, 2 * k
            )
            vis = number_list(entry.get("joints_vis"), k)
            if joints is None or vis is None:
                log.add(item, f"'joints' is not {k} x 2 numbers or 'joints_vis' not {k} numbers")
                continue
            joints = joints.reshape(k, 2) - 1.0  # MATLAB 1-based -> 0-based
            visible = (vis > 0).astype(np.float32)
        else:  # the test split has no joints
            joints, visible = np.zeros((k, 2)), np.zeros(k, np.float32)
        stats["people_with_keypoints"] += bool(visible.any())
        if image_id in missing:
            continue
        if scale <= 0 or center[0] == -1:
            log.add(item, f"invalid box (scale {scale}, centre {center.tolist()})")
            continue
        # HRNet: move the centre down 15 px per scale unit, pad by 1.25, then 1-based -> 0-based.
        center = np.array([center[0], center[1] + 15.0 * scale]) - 1.0
        box_size = scale * PIXEL_STD
        joints = joints.astype(np.float32)
        drop_joints_outside(joints, visible, sizes.get(image_id), item, log)
        records.append(
            PersonRecord(
                image_path=images[image_id],
                image_id=image_id,
                person_id=i,
                center=center.astype(np.float32),
                scale=np.full(2, scale * PADDING, np.float32),
                box_xywh=np.array(
                    [center[0] - box_size / 2, center[1] - box_size / 2, box_size, box_size],
                    np.float32,
                ),
                joints=joints,
                visible=visible,
                area=float(box_size**2),
            )
        )
    stats["images"] = len(images)
    return PoseAnnotations(
        dataset="mpii",
        keypoint_set=MPII,
        annotation_file=annotation_file,
        image_dir=image_dir,
        records=records,
        has_ground_truth=any("joints" in entry for entry in data),
        problems=log.problems,
        stats=stats,
        image_files=images,
    )


def _mpii_image_id(name: str, fallback: int) -> int:
    """MPII images are named by a 9-digit number; use it as the id when it is one."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else fallback
