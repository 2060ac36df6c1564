"""Drawing samples: the crop, its skeleton and its target heatmaps, for a person to judge."""

from __future__ import annotations

import cv2
import numpy as np

from .keypoints import KeypointSet
from .transforms import denormalize


def draw_sample(
    image_chw: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    keypoint_set: KeypointSet,
    codec,
) -> np.ndarray:
    """One tile: the crop with the heatmaps (max over joints) blended in and the skeleton
    drawn from the decoded targets (left side green, right side orange, centre blue)."""
    crop = denormalize(image_chw)
    h, w = crop.shape[:2]
    heat = np.clip(np.asarray(target).max(axis=0), 0.0, 1.0)
    heat = cv2.resize((heat * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    alpha = (heat.astype(np.float32) / 255.0 * 0.6)[:, :, None]
    tile = np.ascontiguousarray((crop * (1 - alpha) + colour * alpha).astype(np.uint8))
    points, _ = codec.decode(np.asarray(target)[None])
    points, ok = points[0], np.asarray(weight) > 0
    for a, b in keypoint_set.skeleton:
        if ok[a] and ok[b]:
            pa, pb = tuple(np.round(points[a]).astype(int)), tuple(np.round(points[b]).astype(int))
            cv2.line(tile, pa, pb, (255, 160, 0), 2, cv2.LINE_AA)
    left = {i for i, n in enumerate(keypoint_set.joint_names) if n.startswith("left")}
    right = {i for i, n in enumerate(keypoint_set.joint_names) if n.startswith("right")}
    for j in np.flatnonzero(ok):
        c = (0, 200, 0) if j in left else (0, 140, 255) if j in right else (255, 80, 0)
        cv2.circle(tile, tuple(np.round(points[j]).astype(int)), 3, c, -1, cv2.LINE_AA)
    return tile


def grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Tiles of equal size -> one image, row-major, black where the last row is short."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return out
