"""Where a detector's boxes live: an image letterboxed into a detector's input and back, and
non-maximum suppression.

Two placements are in use, and they differ by more than a pixel, so each detector names
its own:

* ``"top-left"``: MMDetection's test pipeline for YOLOX (``Resize(keep_ratio=True)`` then
  ``Pad(pad_to_square=True, pad_val=114)``): the image is scaled by
  ``min(H / h, W / w)``, its size rounded half up as ``mmcv.imrescale`` rounds, and padded on
  the right and bottom; boxes go back through the per-axis factors ``new_w / w`` and
  ``new_h / h`` (mmdet's ``scale_factor``), with no offset.
* ``"centre"``: Ultralytics YOLO's ``LetterBox``: the same scale, the image centred with
  grey padding on both sides; boxes go back through the one ratio and the offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PLACEMENTS = ("top-left", "centre")
PAD_VALUE = 114  # grey, as both YOLOX and Ultralytics pad


@dataclass(frozen=True)
class Letterbox:
    """input pixel = image pixel x ``scale_xy`` + ``offset_xy``, per axis."""

    scale_xy: tuple[float, float]
    offset_xy: tuple[float, float]

    def to_input(self, corners: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 in image pixels -> in detector-input pixels."""
        scale = np.tile(self.scale_xy, 2)
        return np.asarray(corners, np.float64) * scale + np.tile(self.offset_xy, 2)

    def to_image(self, corners: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 in detector-input pixels -> in image pixels."""
        scale = np.tile(self.scale_xy, 2)
        return (np.asarray(corners, np.float64) - np.tile(self.offset_xy, 2)) / scale


def letterbox(
    image: np.ndarray, input_hw: tuple[int, int], placement: str
) -> tuple[np.ndarray, Letterbox]:
    """``image`` (h, w, 3) resized keeping its aspect ratio into an (H, W, 3) canvas of grey
    114, placed as ``placement`` says; and how to map boxes back."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    height, width = input_hw
    image_h, image_w = image.shape[:2]
    ratio = min(height / image_h, width / image_w)
    if placement == "top-left":
        new_w = min(width, max(1, int(image_w * ratio + 0.5)))
        new_h = min(height, max(1, int(image_h * ratio + 0.5)))
        left = top = 0
        scale_xy = (new_w / image_w, new_h / image_h)
    else:
        new_w, new_h = round(image_w * ratio), round(image_h * ratio)
        # Ultralytics splits odd padding with round(pad -/+ 0.1): the extra pixel goes right.
        left = int(round((width - new_w) / 2 - 0.1))
        top = int(round((height - new_h) / 2 - 0.1))
        scale_xy = (ratio, ratio)
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    if (new_w, new_h) == (image_w, image_h):
        resized = image
    else:
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, Letterbox(scale_xy, (float(left), float(top)))


def iou_xyxy(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of ``others`` (N, 4), in continuous pixels
    (no +1 on widths: the boxes are real-valued)."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms_xyxy(corners: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: take the best-scoring box, drop every box whose IoU with it is above
    ``iou_threshold``, repeat. Returns the kept indices, best score first (ties: input order)."""
    corners = np.asarray(corners, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    kept = []
    while order.size:
        best, order = order[0], order[1:]
        kept.append(best)
        order = order[iou_xyxy(corners[best], corners[order]) <= iou_threshold]
    return np.asarray(kept, dtype=int)


def xyxy_to_xywh(corners: np.ndarray) -> np.ndarray:
    corners = np.asarray(corners, np.float64).reshape(-1, 4)
    return np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
