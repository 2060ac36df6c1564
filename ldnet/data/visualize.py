"""Drawing poses, the one place that does: predictions over images (demo, predict, serve) and
training samples (the crop, its target heatmaps and the skeleton they decode to)."""

from __future__ import annotations

import cv2
import numpy as np

from .keypoints import KeypointSet
from .transforms import denormalize

LEFT_BGR, RIGHT_BGR, CENTRE_BGR = (0, 200, 0), (0, 140, 255), (255, 80, 0)


def joint_colours(keypoint_set: KeypointSet) -> list[tuple[int, int, int]]:
    """Left joints green, right joints orange, the rest blue: a flipped pose is visible."""
    colours = []
    for name in keypoint_set.joint_names:
        if name.startswith(("left", "l_")):
            colours.append(LEFT_BGR)
        elif name.startswith(("right", "r_")):
            colours.append(RIGHT_BGR)
        else:
            colours.append(CENTRE_BGR)
    return colours


def draw_poses(
    image_bgr: np.ndarray,
    poses: np.ndarray,
    keypoint_set: KeypointSet,
    threshold: float = 0.3,
    boxes_xywh: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of the image with each pose (N, K, 3: x, y, confidence) drawn; joints below
    ``threshold`` are left out."""
    canvas = image_bgr.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    colours = joint_colours(keypoint_set)
    for n, pose in enumerate(
        np.asarray(poses, dtype=np.float64).reshape(-1, keypoint_set.num_joints, 3)
    ):
        if boxes_xywh is not None:
            x, y, w, h = np.round(boxes_xywh[n]).astype(int)
            cv2.rectangle(canvas, (x, y), (x + w, y + h), (200, 200, 200), 1)
        shown = pose[:, 2] >= threshold
        points = np.round(pose[:, :2]).astype(int)
        for a, b in keypoint_set.skeleton:
            if shown[a] and shown[b]:
                cv2.line(
                    canvas, tuple(points[a]), tuple(points[b]), colours[b], thickness, cv2.LINE_AA
                )
        for j in np.flatnonzero(shown):
            cv2.circle(canvas, tuple(points[j]), thickness + 2, colours[j], -1, cv2.LINE_AA)
    return canvas


def draw_sample(
    image_chw: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    keypoint_set: KeypointSet,
    codec,
) -> np.ndarray:
    """One tile: the crop with the heatmaps (max over joints) blended in and the skeleton
    drawn from the decoded targets, coloured as ``draw_poses`` colours predictions."""
    crop = denormalize(image_chw)
    h, w = crop.shape[:2]
    heat = np.clip(np.asarray(target).max(axis=0), 0.0, 1.0)
    heat = cv2.resize((heat * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    alpha = (heat.astype(np.float32) / 255.0 * 0.6)[:, :, None]
    tile = np.ascontiguousarray((crop * (1 - alpha) + colour * alpha).astype(np.uint8))
    points, _ = codec.decode(np.asarray(target)[None])
    # A joint with weight 0 has no target: confidence 0 keeps it out of the drawing.
    visible = (np.asarray(weight) > 0).astype(np.float64)
    pose = np.concatenate([points[0], visible[:, None]], axis=1)[None]
    return draw_poses(tile, pose, keypoint_set, threshold=0.5)


def grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Tiles of equal size -> one image, row-major, black where the last row is short."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return out
