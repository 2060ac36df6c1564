"""A contact sheet of generated images with their annotations drawn, for a person to judge."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ldnet.data.keypoints import COCO
from ldnet.data.visualize import joint_colours

from .dataset import SyntheticPaths


def draw_annotations(image: np.ndarray, annotations: list[dict]) -> np.ndarray:
    """Boxes in grey, skeletons coloured by side (left green, right orange); visible joints
    filled, occluded ones (v = 1) as rings."""
    canvas = image.copy()
    colours = joint_colours(COCO)
    for ann in annotations:
        x, y, w, h = (int(round(v)) for v in ann["bbox"])
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), (200, 200, 200), 1)
        points = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        xy = np.round(points[:, :2]).astype(int)
        for a, b in COCO.skeleton:
            if points[a, 2] > 0 and points[b, 2] > 0:
                cv2.line(canvas, tuple(xy[a]), tuple(xy[b]), colours[b], 1, cv2.LINE_AA)
        for j in np.flatnonzero(points[:, 2] > 0):
            filled = -1 if points[j, 2] == 2 else 1
            cv2.circle(canvas, tuple(xy[j]), 2, colours[j], filled, cv2.LINE_AA)
    return canvas


def draw_preview(
    root: str | Path,
    out_png: str | Path,
    split: str = "val2017",
    count: int = 12,
    columns: int = 4,
    annotated: bool = True,
) -> Path:
    """The first ``count`` images of a split, each raw beside (or only) annotated."""
    paths = SyntheticPaths.under(root)
    ann_file = paths.val_annotations if split == "val2017" else paths.train_annotations
    image_dir = paths.val_images if split == "val2017" else paths.train_images
    data = json.loads(Path(ann_file).read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    tiles = []
    for image in data["images"][:count]:
        picture = cv2.imread(str(image_dir / image["file_name"]))
        if annotated:
            picture = draw_annotations(picture, by_image.get(image["id"], []))
        tiles.append(picture)
    if not tiles:
        raise ValueError(f"{ann_file} has no images")
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * h, min(columns, len(tiles)) * w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), sheet)
    return out_png
