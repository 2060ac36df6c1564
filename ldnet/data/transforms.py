"""Geometry of the top-down crop, shared by training and testing, plus augmentation.

Coordinate convention: a pixel's integer index is the coordinate of its *centre*, so an
image of width W spans x in [-0.5, W - 0.5] and a horizontal flip maps x -> W - 1 - x. In the
``"ldnet"`` convention (ours, the default, what training uses) the crop maps the person centre
to the centre of the input, ((W - 1) / 2, (H - 1) / 2), so that flipping the crop is exactly
flipping the image about the person centre. The ``"hrnet"`` convention (HRNet's
``get_affine_transform``, MMPose's ``get_warp_matrix``; what their weights learned) maps it
to (W / 2, H / 2), half a pixel right of and below the middle; its crops are therefore one
input pixel off under a flip, which its flip test papers over with a one-pixel heatmap shift
(``codecs.flip_back``, ``codec.flip_shift_px``). The convention travels with the codec.

Box -> centre/scale follows HRNet: centre = (x + w / 2, y + h / 2); the box is widened or
heightened to the input aspect ratio; scale = box size / 200 (pixel_std), times 1.25 padding.
Only ``scale[0]`` (width) sets the zoom, because the aspect ratio is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PIXEL_STD = 200.0
PADDING = 1.25
# ImageNet statistics, RGB order, for images scaled to [0, 1].
MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def box_to_center_scale(
    box_xywh, input_size: tuple[int, int], padding: float = PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's ``_xywh2cs``: box (x, y, w, h) -> centre (2,), scale (2,) in units of 200 px.

    ``box_xywh`` may be (4,) or (N, 4); ``input_size`` is (height, width).
    """
    box = np.asarray(box_xywh, dtype=np.float64)
    x, y, w, h = np.moveaxis(box, -1, 0)
    aspect_ratio = input_size[1] / input_size[0]  # width / height
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    w_fixed = np.where(w > aspect_ratio * h, w, h * aspect_ratio)
    h_fixed = np.where(w > aspect_ratio * h, w / aspect_ratio, h)
    scale = np.stack([w_fixed, h_fixed], axis=-1) / PIXEL_STD * padding
    return center.astype(np.float32), scale.astype(np.float32)


def crop_center(output_size: tuple[int, int], convention: str = "ldnet") -> tuple[float, float]:
    """(x, y) in the crop where the person centre lands: ((W - 1) / 2, (H - 1) / 2) in the
    ``"ldnet"`` convention, HRNet's (W / 2, H / 2) in the ``"hrnet"`` one."""
    out_h, out_w = output_size
    if convention == "hrnet":
        return out_w * 0.5, out_h * 0.5
    if convention != "ldnet":
        raise ValueError(f"unknown coordinate convention {convention!r}: expected ldnet or hrnet")
    return (out_w - 1) * 0.5, (out_h - 1) * 0.5


def affine_matrix(
    center,
    scale,
    rotation_deg=0.0,
    output_size: tuple[int, int] = (256, 192),
    *,
    flip: bool | np.ndarray = False,
    inverse: bool = False,
    convention: str = "ldnet",
) -> np.ndarray:
    """The 2x3 matrix mapping image coordinates to crop coordinates (or back, ``inverse``).

    ``output_size`` is (height, width) of the crop (input or heatmap resolution).
    Broadcasts: ``center`` (..., 2), ``scale`` (..., 2), ``rotation_deg`` (...) give (..., 2, 3).
    A positive rotation turns the image content clockwise in the crop, like HRNet's.
    ``flip`` mirrors the crop horizontally about the crop centre: x -> W - 1 - x in the
    ``"ldnet"`` convention (which equals flipping the image), x -> W - x in the ``"hrnet"``
    one (HRNet's training flip: image mirrored, centre moved to width - 1 - x).
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    theta = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    flip = np.asarray(flip, dtype=bool)
    shape = np.broadcast_shapes(center.shape[:-1], scale.shape[:-1], theta.shape, flip.shape)
    out_h, out_w = output_size
    crop_x, crop_y = crop_center(output_size, convention)
    zoom = out_w / (scale[..., 0] * PIXEL_STD)
    cos, sin = np.cos(theta) * zoom, np.sin(theta) * zoom
    # crop = zoom * R(-theta) (p - center) + crop_center
    a = np.zeros(shape + (2, 3))
    a[..., 0, 0], a[..., 0, 1] = cos, sin
    a[..., 1, 0], a[..., 1, 1] = -sin, cos
    cx, cy = center[..., 0], center[..., 1]
    a[..., 0, 2] = crop_x - (a[..., 0, 0] * cx + a[..., 0, 1] * cy)
    a[..., 1, 2] = crop_y - (a[..., 1, 0] * cx + a[..., 1, 1] * cy)
    # Mirror about the crop centre: x' = 2 * crop_x - x, applied after the crop.
    a[..., 0, :] = np.where(flip[..., None], -a[..., 0, :], a[..., 0, :])
    a[..., 0, 2] += np.where(flip, 2 * crop_x, 0.0)
    return invert_affine(a) if inverse else a


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of (..., 2, 3) affine matrices."""
    linear = matrix[..., :2]
    inv = np.linalg.inv(linear)
    shift = -np.einsum("...ij,...j->...i", inv, matrix[..., 2])
    return np.concatenate([inv, shift[..., None]], axis=-1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply (..., 2, 3) matrices to points (..., K, 2)."""
    points = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", matrix[..., :2], points) + matrix[..., None, :, 2]


def input_to_image(
    points: np.ndarray,
    center,
    scale,
    rotation_deg,
    input_size: tuple[int, int],
    convention: str = "ldnet",
) -> np.ndarray:
    """Map points (N, K, 2) from crop coordinates back to image coordinates.

    The inverse of the crop geometry (HRNet's ``transform_preds``, with rotation): this is the
    last step of testing, after ``codec.decode``, in the convention of the codec.
    """
    inverse = affine_matrix(
        center, scale, rotation_deg, input_size, inverse=True, convention=convention
    )
    return transform_points(points, inverse)


def warp_crop(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Cut the crop with ``cv2.warpAffine`` (bilinear, constant black border)."""
    out_h, out_w = output_size
    return cv2.warpAffine(image, matrix.astype(np.float32), (out_w, out_h), flags=cv2.INTER_LINEAR)


# normalize() as a table: uint8 value -> normalised float, one row per RGB channel. A table
# lookup is ~5x faster than the float arithmetic on a 256x192 crop (it is on the hot path).
_NORMALIZE_LUT = (
    (np.arange(256, dtype=np.float32)[None, :] / 255.0 - MEAN_RGB[:, None]) / STD_RGB[:, None]
).astype(np.float32)


def normalize(crop_bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR crop (H, W, 3) -> float32 RGB (3, H, W), ImageNet-normalised."""
    planes = crop_bgr.transpose(2, 0, 1)[::-1]  # (3, H, W), RGB
    return np.stack([np.take(_NORMALIZE_LUT[c], planes[c]) for c in range(3)])


def denormalize(image_chw: np.ndarray) -> np.ndarray:
    """Inverse of ``normalize``: float RGB (3, H, W) -> uint8 BGR (H, W, 3), for drawing."""
    rgb = np.asarray(image_chw, dtype=np.float32).transpose(1, 2, 0) * STD_RGB + MEAN_RGB
    return np.ascontiguousarray(np.clip(rgb[:, :, ::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class AugmentConfig:
    """HRNet's training augmentation (COCO config values by default)."""

    scale_factor: float = 0.35  # scale *= clip(1 + N(0,1) * f, 1 - f, 1 + f)
    rotation_factor_deg: float = 45.0  # rot = clip(N(0,1) * f, -2f, 2f) ...
    rotation_prob: float = 0.6  # ... with this probability, else 0
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8  # more than this many visible joints to allow half-body
    half_body_padding: float = 1.5


def half_body_center_scale(
    joints: np.ndarray,
    visible: np.ndarray,
    upper_body: tuple[int, ...],
    lower_body: tuple[int, ...],
    input_size: tuple[int, int],
    rng: np.random.Generator,
    padding: float = 1.5,
) -> tuple[np.ndarray, np.ndarray] | None:
    """HRNet's half-body transform: a box around the upper or the lower visible joints.

    HRNet draws ``randn() < 0.5`` (upper body ~69 % of the time); we draw a fair coin.
    """
    vis = visible > 0
    upper = np.zeros_like(vis)
    upper[list(upper_body)] = True
    lower = np.zeros_like(vis)
    lower[list(lower_body)] = True
    upper_idx, lower_idx = np.flatnonzero(vis & upper), np.flatnonzero(vis & lower)
    if rng.random() < 0.5 and len(upper_idx) > 2:
        chosen = upper_idx
    else:
        chosen = lower_idx if len(lower_idx) > 2 else upper_idx
    if len(chosen) < 2:
        return None
    pts = joints[chosen]
    center = pts.mean(axis=0)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    aspect_ratio = input_size[1] / input_size[0]
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    scale = np.array([w, h]) / PIXEL_STD * padding
    return center.astype(np.float32), scale.astype(np.float32)


def random_geometry(
    joints: np.ndarray,
    visible: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    keypoint_set,
    input_size: tuple[int, int],
    config: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Draw (centre, scale, rotation_deg, flip) for one training sample, in HRNet's order."""
    if (
        config.half_body_prob > 0
        and int((visible > 0).sum()) > config.half_body_min_joints
        and rng.random() < config.half_body_prob
    ):
        half = half_body_center_scale(
            joints,
            visible,
            keypoint_set.upper_body,
            keypoint_set.lower_body,
            input_size,
            rng,
            config.half_body_padding,
        )
        if half is not None:
            center, scale = half
    sf, rf = config.scale_factor, config.rotation_factor_deg
    scale = scale * np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf)
    rotation = 0.0
    if rng.random() < config.rotation_prob:
        rotation = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
    flip = bool(rng.random() < config.flip_prob)
    return center, scale.astype(np.float32), rotation, flip


def flip_joints(
    joints: np.ndarray, visible: np.ndarray, flip_permutation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Swap left/right joint labels after a geometric mirror (coordinates already mirrored)."""
    return joints[..., flip_permutation, :], visible[..., flip_permutation]
