"""Drawing predicted poses over images (demo, predict)."""

from __future__ import annotations

import cv2
import numpy as np

from ldnet.data.keypoints import KeypointSet

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
