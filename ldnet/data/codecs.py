"""Heatmap codecs: keypoints in input-crop pixels <-> Gaussian heatmaps.

One object owns both directions, so training targets and test-time decoding cannot disagree
about half a pixel (MMPose 1.x codec style). Two codecs:

- ``MSRAHeatmap``: HRNet / SimpleBaseline (Microsoft Research Asia). The Gaussian is centred on
  the *rounded* heatmap position (HRNet's ``int(x / stride + 0.5)``) and truncated at 3 sigma;
  decoding takes the argmax and moves 0.25 px toward the higher neighbour on each axis.
- ``DARKHeatmap``: Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose
  Estimation" (CVPR 2020). Unbiased encoding (the Gaussian sits at the exact sub-pixel
  position) and distribution-aware decoding: blur the heatmap with the Gaussian kernel, take
  the log, and refine the argmax by one Newton step of the second-order Taylor expansion.

Heatmap <-> input, in the two coordinate conventions a codec can carry (``CONVENTIONS``):

- ``"ldnet"`` (ours, ``ldnet train``'s default): heatmap pixel ``u`` covers input pixels
  ``[s*u, s*u + s - 1]`` for stride ``s``, so its centre is at input ``x = s*u + (s - 1) / 2``.
  Together with the pixel-centre crop of ``transforms`` this is exactly flip-equivariant:
  mirroring the input (x -> W - 1 - x) mirrors the heatmap (u -> w - 1 - u), so the flip test
  needs no shift.
- ``"hrnet"`` (HRNet's and MMPose's non-UDP models; what their weights learned): heatmap pixel
  ``u`` is input ``x = s*u`` (HRNet's ``transform_preds`` maps heatmap coordinates through the
  box's affine at heatmap size; MMPose multiplies by the stride). Its crops are not
  flip-exact, so its flip test moves the mirrored heatmap one pixel right (``flip_shift_px``),
  and its quarter offset refines only away from the border (``get_final_preds``).

A codec in either convention encodes and decodes consistently. Imported HRNet/MMPose weights
carry ``"hrnet"``; a training run uses its config's ``data.convention`` (``"ldnet"`` unless
set; the official-recipe configs set ``"hrnet"``, as the LDNet release's pipeline).

Shapes: keypoints (..., K, 2) as (x, y); heatmaps (..., K, h, w); sizes are (height, width).
Everything is vectorised over people and joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# See the module docstring; ``ldnet.models.record`` stores one of these with the weights.
CONVENTIONS = ("ldnet", "hrnet")


@dataclass(frozen=True)
class MSRAHeatmap:
    """HRNet's Gaussian heatmap with quarter-offset decoding."""

    input_size: tuple[int, int] = (256, 192)  # (height, width)
    heatmap_size: tuple[int, int] = (64, 48)  # (height, width)
    sigma: float = 2.0
    convention: str = "ldnet"  # one of CONVENTIONS

    name = "msra"

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"unknown coordinate convention {self.convention!r}: "
                f"expected one of {', '.join(CONVENTIONS)}"
            )

    @property
    def flip_shift_px(self) -> int:
        """Heatmap pixels to move the mirrored heatmap right in the flip test (HRNet's
        ``TEST.SHIFT_HEATMAP``, MMPose's ``shift_heatmap``); 0 where the crop is flip-exact."""
        return 1 if self.convention == "hrnet" else 0

    @property
    def stride(self) -> np.ndarray:
        """(x, y) input pixels per heatmap pixel."""
        return np.array(
            [
                self.input_size[1] / self.heatmap_size[1],
                self.input_size[0] / self.heatmap_size[0],
            ]
        )

    def to_heatmap(self, points: np.ndarray) -> np.ndarray:
        stride = self.stride
        if self.convention == "hrnet":
            return np.asarray(points, dtype=np.float64) / stride
        return (np.asarray(points, dtype=np.float64) + 0.5) / stride - 0.5

    def to_input(self, points: np.ndarray) -> np.ndarray:
        stride = self.stride
        if self.convention == "hrnet":
            return np.asarray(points, dtype=np.float64) * stride
        return (np.asarray(points, dtype=np.float64) + 0.5) * stride - 0.5

    # -- encoding -------------------------------------------------------------------------
    def _gaussian_centres(self, mu: np.ndarray) -> np.ndarray:
        # HRNet's int(x + 0.5): the peak lands on a whole heatmap pixel.
        return np.floor(mu + 0.5)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (..., K, 2) in input pixels, visibility (..., K) -> heatmaps, weights.

        Heatmaps are float32 (..., K, h, w) with peak 1 (unnormalised Gaussian, radius
        3 sigma); the weight of a joint is 0 when it is unlabelled or its Gaussian window
        misses the heatmap entirely (HRNet's rule), 1 otherwise.
        """
        h, w = self.heatmap_size
        mu = self._gaussian_centres(self.to_heatmap(keypoints))  # (..., K, 2)
        radius = 3.0 * self.sigma
        mx, my = mu[..., 0], mu[..., 1]
        inside = (mx + radius >= 0) & (mx - radius <= w - 1) & (my + radius >= 0)
        inside &= my - radius <= h - 1
        weights = (np.asarray(visible) > 0) & inside & np.isfinite(mx) & np.isfinite(my)
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        dx = xs - np.where(weights, mx, 0.0)[..., None]  # (..., K, w)
        dy = ys - np.where(weights, my, 0.0)[..., None]  # (..., K, h)
        # Separable Gaussian: exp(-(dx^2 + dy^2) / 2 s^2) = gx * gy, cut at the 3-sigma window
        # (HRNet's square window of 2 * 3 sigma + 1 pixels around the centre).
        gx = np.exp(-(dx**2) / (2 * self.sigma**2)) * (np.abs(dx) <= radius)
        gy = np.exp(-(dy**2) / (2 * self.sigma**2)) * (np.abs(dy) <= radius)
        gy = gy * weights[..., None]
        heatmaps = (gy[..., :, None] * gx[..., None, :]).astype(np.float32)
        return heatmaps, weights.astype(np.float32)

    # -- decoding -------------------------------------------------------------------------
    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (..., K, h, w) -> keypoints (..., K, 2) in input pixels, scores (..., K)."""
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        coords, scores = argmax_2d(heatmaps)
        coords = self._refine(heatmaps, coords)
        return self.to_input(coords), scores

    def _refine(self, heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Quarter offset toward the higher neighbour (HRNet's post-processing)."""
        h, w = heatmaps.shape[-2:]
        flat = heatmaps.reshape(-1, h * w)
        px = coords[..., 0].reshape(-1).astype(np.int64)
        py = coords[..., 1].reshape(-1).astype(np.int64)
        rows = np.arange(flat.shape[0])
        ok_x = (px > 0) & (px < w - 1)
        ok_y = (py > 0) & (py < h - 1)
        if self.convention == "hrnet":
            # get_final_preds refines both axes only when 1 < px < w - 1 and 1 < py < h - 1
            # (so never the first two columns or rows), and neither axis otherwise.
            ok_x = ok_y = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
        pxc, pyc = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
        diff_x = flat[rows, py * w + pxc + 1] - flat[rows, py * w + pxc - 1]
        diff_y = flat[rows, (pyc + 1) * w + px] - flat[rows, (pyc - 1) * w + px]
        offset = np.stack([np.sign(diff_x) * ok_x, np.sign(diff_y) * ok_y], axis=-1) * 0.25
        return coords + offset.reshape(coords.shape)


@dataclass(frozen=True)
class DARKHeatmap(MSRAHeatmap):
    """Unbiased Gaussian encoding with distribution-aware (DARK) decoding."""

    name = "dark"

    def _gaussian_centres(self, mu: np.ndarray) -> np.ndarray:
        return mu  # the exact sub-pixel position

    @property
    def blur_kernel(self) -> np.ndarray:
        """The Gaussian that modulates the heatmap before the Taylor step (DARK, eq. 9).

        Same sigma as the target, 11 taps for sigma 2 (the DARK / MMPose setting).
        """
        radius = int(np.ceil(2.5 * self.sigma))
        t = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-(t**2) / (2 * self.sigma**2))
        return (kernel / kernel.sum()).astype(np.float32)

    def _refine(self, heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
        h, w = heatmaps.shape[-2:]
        maps = np.ascontiguousarray(heatmaps.reshape(-1, h, w), dtype=np.float32)
        peak = maps.max(axis=(1, 2), keepdims=True)
        blurred = _blur_stack(maps, self.blur_kernel)
        # Keep the original peak height so the log scale is comparable (DARK's modulation).
        blurred *= peak / np.maximum(blurred.max(axis=(1, 2), keepdims=True), 1e-12)
        n = np.arange(maps.shape[0])
        x = coords[..., 0].reshape(-1).astype(np.int64)
        y = coords[..., 1].reshape(-1).astype(np.int64)

        def at(ddx: int, ddy: int) -> np.ndarray:
            # log of the modulated map at a neighbour; off-map neighbours repeat the edge.
            value = blurred[n, np.clip(y + ddy, 0, h - 1), np.clip(x + ddx, 0, w - 1)]
            return np.log(np.maximum(value.astype(np.float64), 1e-10))

        centre = at(0, 0)
        dx = 0.5 * (at(1, 0) - at(-1, 0))
        dy = 0.5 * (at(0, 1) - at(0, -1))
        dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
        dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy**2
        # offset = -H^-1 g, only where the Hessian is that of a maximum (negative definite).
        ok = (det > 1e-12) & (dxx < 0)
        safe = np.where(ok, det, 1.0)
        off_x = -(dyy * dx - dxy * dy) / safe
        off_y = -(dxx * dy - dxy * dx) / safe
        offset = np.stack([off_x, off_y], axis=-1) * ok[:, None]
        # A Newton step beyond one pixel means the model is not locally Gaussian: ignore it.
        offset = np.where(np.abs(offset) <= 1.0, offset, 0.0)
        return coords + offset.reshape(coords.shape)


def _blur_stack(maps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable blur of a stack of maps (M, h, w) with zero padding, in two cv2 calls.

    Zero padding, not reflection: a Gaussian cut by the border stays one peak (reflection
    would add a mirrored twin and pull the estimate several pixels toward the border).
    """
    m, h, w = maps.shape
    row = kernel.reshape(1, -1)
    out = cv2.filter2D(maps.reshape(m * h, w), -1, row, borderType=cv2.BORDER_CONSTANT)
    out = out.reshape(m, h, w).transpose(0, 2, 1).reshape(m * w, h)
    out = cv2.filter2D(np.ascontiguousarray(out), -1, row, borderType=cv2.BORDER_CONSTANT)
    return np.ascontiguousarray(out.reshape(m, w, h).transpose(0, 2, 1))


CODECS: dict[str, type[MSRAHeatmap]] = {"msra": MSRAHeatmap, "dark": DARKHeatmap}


def build_codec(
    name: str,
    input_size: tuple[int, int] = (256, 192),
    heatmap_size: tuple[int, int] | None = None,
    sigma: float = 2.0,
    convention: str = "ldnet",
) -> MSRAHeatmap:
    """Codec by name ("msra" or "dark"); the heatmap defaults to 1/4 of the input."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}: expected one of {', '.join(CODECS)}")
    if heatmap_size is None:
        heatmap_size = (input_size[0] // 4, input_size[1] // 4)
    return CODECS[name](tuple(input_size), tuple(heatmap_size), float(sigma), convention)


def argmax_2d(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (x, y) of each heatmap's maximum (..., K, 2) and the maximum (..., K).

    Like HRNet, a non-positive maximum gives the coordinate (0, 0) and its (non-positive)
    value as the score.
    """
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.reshape(heatmaps.shape[:-2] + (h * w,))
    index = flat.argmax(axis=-1)
    scores = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
    coords = np.stack([index % w, index // w], axis=-1).astype(np.float64)
    coords *= (scores > 0)[..., None]
    return coords, scores


def flip_back(heatmaps: np.ndarray, flip_permutation: np.ndarray, shift_px: int = 0) -> np.ndarray:
    """Heatmaps predicted on a mirrored crop -> heatmaps of the unmirrored crop.

    Mirrors the width axis and swaps left/right channels. ``shift_px`` moves the result right
    by whole heatmap pixels: HRNet's flip test uses 1 to compensate its crop convention; with
    the "ldnet" (flip-exact) convention the right value is 0 (``codec.flip_shift_px``).
    Works on numpy arrays and on torch tensors (..., K, h, w).
    """
    if hasattr(heatmaps, "flip") and not isinstance(heatmaps, np.ndarray):  # torch.Tensor
        out = heatmaps.flip(-1)[..., list(flip_permutation), :, :]
        if shift_px:
            out = out.clone()
            out[..., shift_px:] = out[..., :-shift_px].clone()
        return out
    out = np.asarray(heatmaps)[..., ::-1][..., flip_permutation, :, :]
    out = np.ascontiguousarray(out)
    if shift_px:
        out[..., shift_px:] = out[..., :-shift_px].copy()
    return out
