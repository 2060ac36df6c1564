"""COCO detection-results files -> records: the test-time boxes of COCO and CrowdPose.

A detection-results file is a JSON list of ``{"image_id", "bbox": [x, y, w, h], "score",
"category_id"}``. The boxes are used as they are (no cleaning), as HRNet does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldnet.data.keypoints import KeypointSet
from ldnet.data.transforms import box_to_center_scale
from ldnet.numbers import is_finite_number

from .jsonfiles import load_json, number_list, schema_error
from .records import PersonRecord, ProblemLog


def read_detections(
    path: Path,
    *,
    images: dict[int, Path],
    missing: set[int],
    keypoint_set: KeypointSet,
    input_size: tuple[int, int],
    score_threshold: float,
    log: ProblemLog,
) -> list[PersonRecord]:
    """One record per person detection with ``score >= score_threshold`` on a known image
    (``images``: id -> path; ``missing``: ids whose file is absent, skipped quietly as their
    absence is already logged). The records carry no ground truth."""
    data = load_json(path)
    if not isinstance(data, list):
        raise schema_error(path, "a detection-results file is a list of detections")
    k = keypoint_set.num_joints
    records = []
    for i, det in enumerate(data):
        if not isinstance(det, dict) or "image_id" not in det or "bbox" not in det:
            raise schema_error(path, f"detection [{i}] has no 'image_id' or 'bbox'")
        if det.get("category_id", 1) != 1:
            continue
        image_id = det["image_id"]
        item = f"detection {i} (image {image_id})"
        score = det.get("score", 1.0)
        if not is_finite_number(score):
            log.add(item, "'score' is not a finite number")
            continue
        if score < score_threshold:
            continue
        if image_id not in images:
            log.add(item, "detection names an unknown image id")
            continue
        if image_id in missing:
            continue
        box = number_list(det["bbox"], 4)
        if box is None or box[2] <= 0 or box[3] <= 0:
            log.add(item, f"invalid box {det['bbox']!r} (zero area or not 4 numbers)")
            continue
        center, scale = box_to_center_scale(box, input_size)
        records.append(
            PersonRecord(
                image_path=images[image_id],
                image_id=image_id,
                person_id=i,
                center=center,
                scale=scale,
                box_xywh=box.astype(np.float32),
                joints=np.zeros((k, 2), np.float32),
                visible=np.zeros(k, np.float32),
                score=float(score),
                area=float(box[2] * box[3]),
            )
        )
    return records
