"""Person-level post-processing of the HRNet lineage: rescoring, OKS-NMS, results rows.

Both follow the HRNet reference (``lib/core/function.py`` validate, ``lib/dataset/coco.py``
evaluate, ``lib/nms/nms.py`` oks_iou / oks_nms), which MMPose keeps:

- a person's score is its box score times the mean confidence of its joints above
  ``in_vis_threshold`` (0 when none is above);
- a person's area, the scale of OKS, is the area of its padded, aspect-fixed box,
  ``prod(scale * 200)``, not the raw detection box;
- the OKS between two people uses the mean of their two areas, so it is symmetric;
- greedy NMS per image keeps the best-scored person and drops every other whose OKS with it
  is above the threshold.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ldnet.data.transforms import PIXEL_STD


@dataclass
class PersonPrediction:
    """One person of the test path: keypoints in image pixels and where the crop came from."""

    image_id: int
    keypoints: np.ndarray  # (K, 3): x, y in image px (0-based), confidence
    box_score: float
    center: np.ndarray  # (2,) image px
    scale: np.ndarray  # (2,) padded, aspect-fixed box size / 200
    score: float = 0.0  # after rescoring

    @property
    def area(self) -> float:
        return float(box_areas_px(self.scale))


def box_areas_px(scales) -> np.ndarray:
    """Area of the padded, aspect-fixed person box, the OKS scale of OKS-NMS: (..., 2) -> (...)."""
    return np.prod(np.asarray(scales, dtype=np.float64) * PIXEL_STD, axis=-1)


def joint_scores(keypoints: np.ndarray, in_vis_threshold: float) -> np.ndarray:
    """(N, K, 3) -> (N,): mean confidence of each person's joints above the threshold
    (0 for a person with none)."""
    confidences = keypoints[..., 2]
    confident = confidences > in_vis_threshold
    count = confident.sum(axis=-1)
    total = (confidences * confident).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def rescore(predictions: list[PersonPrediction], in_vis_threshold: float) -> None:
    """score = box score x mean confidence of the joints above ``in_vis_threshold``."""
    if not predictions:
        return
    scores = joint_scores(np.stack([p.keypoints for p in predictions]), in_vis_threshold)
    for person, joint_score in zip(predictions, scores, strict=True):
        person.score = float(joint_score) * person.box_score


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas) -> np.ndarray:
    """OKS between every pair of people of one image: (N, K, 3), (N,) -> (N, N).

    exp(-d^2 / (2 (2 sigma)^2 s)) averaged over every joint, with s the mean area of the
    pair (HRNet's ``oks_iou`` with ``in_vis_thre`` unset, as its evaluation calls it).
    """
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    delta = keypoints[:, None, :, :2] - keypoints[None, :, :, :2]
    squared = (delta**2).sum(-1)  # (N, N, K)
    areas = np.asarray(areas, dtype=np.float64)
    pair_area = (areas[:, None] + areas[None, :]) / 2 + np.spacing(1)
    return np.exp(-squared / (2 * variances * pair_area[..., None])).mean(-1)


def oks_nms_indices(
    keypoints: np.ndarray, areas: np.ndarray, scores: np.ndarray, sigmas, threshold: float
) -> list[int]:
    """Greedy OKS-NMS over the people of one image: indices kept, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlap = oks_matrix(keypoints[order], np.asarray(areas)[order], sigmas)
    suppressed = np.zeros(len(order), bool)
    kept = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(int(order[i]))
        suppressed |= overlap[i] > threshold
    return kept


def oks_nms(
    predictions: list[PersonPrediction], sigmas, threshold: float
) -> list[PersonPrediction]:
    """``oks_nms_indices`` per image, over rescored predictions."""
    by_image: dict[int, list[PersonPrediction]] = defaultdict(list)
    for person in predictions:
        by_image[person.image_id].append(person)
    kept = []
    for people in by_image.values():
        keypoints = np.stack([p.keypoints for p in people])
        areas = box_areas_px(np.stack([p.scale for p in people]))
        scores = np.array([p.score for p in people])
        kept += [people[i] for i in oks_nms_indices(keypoints, areas, scores, sigmas, threshold)]
    return kept


def coco_results_rows(image_id, keypoints: np.ndarray, scores) -> list[dict]:
    """People of one image (or one per ``image_id`` when it is a sequence) as rows of the
    COCO results format, keypoints rounded to 1e-4 px: far below any error that matters, yet
    fine enough that two runs agreeing to 1e-6 px write the same numbers."""
    ids = image_id if isinstance(image_id, (list, tuple, np.ndarray)) else [image_id] * len(scores)
    return [
        {
            "image_id": int(ident) if isinstance(ident, (int, np.integer)) else ident,
            "category_id": 1,
            "keypoints": [round(float(v), 4) for v in np.asarray(points).reshape(-1)],
            "score": float(score),
        }
        for ident, points, score in zip(ids, keypoints, scores, strict=True)
    ]


def people_results(
    predictions: list[PersonPrediction], sigmas, in_vis_threshold: float, oks_threshold: float
) -> list[dict]:
    """Rescore, OKS-NMS per image, and the COCO results rows of what is kept."""
    rescore(predictions, in_vis_threshold)
    kept = oks_nms(predictions, sigmas, oks_threshold)
    return coco_results_rows(
        [p.image_id for p in kept], [p.keypoints for p in kept], [p.score for p in kept]
    )
