"""Person boxes for top-down inference: checked caller boxes, COCO detection files, the
whole frame. Boxes are (x, y, w, h) in 0-based image pixels, as COCO writes them."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import PredictInputError


class BoxError(PredictInputError):
    """A person box that cannot be used."""


def whole_image_box(image_shape: tuple[int, ...]) -> np.ndarray:
    """The frame as one person box, (1, 4)."""
    height, width = image_shape[:2]
    return np.array([[0.0, 0.0, float(width), float(height)]])


def box_problem(box: np.ndarray, image_shape: tuple[int, ...]) -> str | None:
    """Why ``box`` (x, y, w, h) cannot be a person in an image of ``image_shape``, or None.

    A box partly outside the frame is fine (the crop is padded with black, as in training);
    one with no pixel inside is not."""
    x, y, w, h = (float(v) for v in box)
    if not np.all(np.isfinite(box)):
        return "has a non-finite coordinate"
    if w <= 0 or h <= 0:
        return f"has zero or negative size {w:g}x{h:g}"
    height, width = image_shape[:2]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"lies outside the {width}x{height} image"
    return None


def check_boxes(boxes, image_shape: tuple[int, ...], source: str = "image") -> np.ndarray:
    """Caller boxes as a float (N, 4) array; a bad one stops with its index and values."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise BoxError(f"{source}: boxes must be (N, 4) x, y, w, h; got shape {array.shape}")
    for index, box in enumerate(array):
        problem = box_problem(box, image_shape)
        if problem:
            values = ", ".join(f"{v:g}" for v in box)
            raise BoxError(f"{source}: box {index} ({values}) {problem}")
    return array


def parse_box(text: str) -> list[float]:
    """``"x,y,w,h"`` -> four numbers (for ``--box``)."""
    parts = text.replace(" ", "").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise BoxError(f"box {text!r}: expected x,y,w,h (four numbers)")
    return values


class DetectionFile:
    """Person boxes from a COCO detection-results file: a JSON list of
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (e.g. HRNet's
    ``COCO_val2017_detections_AP_H_56_person.json``). Entries of other categories are
    ignored; entries with a zero or negative size are dropped and counted in ``dropped``."""

    def __init__(self, path: str | Path, score_threshold: float = 0.0):
        self.path = Path(path)
        entries = self._read()
        self.boxes: dict[int, list[tuple[list[float], float]]] = defaultdict(list)
        self.dropped = 0
        for index, entry in enumerate(entries):
            try:
                image_id = int(entry["image_id"])
                box = [float(v) for v in entry["bbox"]]
                score = float(entry.get("score", 1.0))
                category = int(entry.get("category_id", 1))
            except (KeyError, TypeError, ValueError):
                raise BoxError(
                    f"{self.path}: entry {index} is not a detection "
                    '({"image_id", "bbox": [x, y, w, h], "score"})'
                ) from None
            if len(box) != 4:
                raise BoxError(f"{self.path}: entry {index} has a bbox of {len(box)} numbers")
            if category != 1 or score < score_threshold:
                continue
            if not (box[2] > 0 and box[3] > 0):
                self.dropped += 1
                continue
            self.boxes[image_id].append((box, score))

    def _read(self) -> list:
        if not self.path.is_file():
            raise BoxError(f"{self.path}: no such detection file")
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BoxError(f"{self.path}: not a readable JSON detection file ({error})") from None
        if not isinstance(entries, list):
            raise BoxError(f"{self.path}: expected a JSON list of detections")
        return entries

    def __call__(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) and scores (N,) of one image; none if the file has none for it."""
        found = self.boxes.get(image_id, [])
        boxes = np.array([box for box, _ in found], dtype=np.float64).reshape(-1, 4)
        return boxes, np.array([score for _, score in found], dtype=np.float64)
