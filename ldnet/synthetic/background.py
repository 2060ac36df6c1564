"""Random backgrounds: gradients, blurred noise textures, stripes and clutter.

Clutter includes thick bars and blobs in random colours, so a model cannot find people by
"anything that is not smooth"; it has to find the articulated shape.
"""

from __future__ import annotations

import cv2
import numpy as np

from .render import random_colour


def gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    a = np.array(random_colour(rng), np.float32)
    b = np.array(random_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    t = xs[None, :] * np.float32(np.cos(angle)) + ys[:, None] * np.float32(np.sin(angle))
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    return a + (b - a) * t[..., None]


def noise_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Coloured noise at a random grain, upsampled: grass, gravel, carpet, foliage."""
    cells = int(rng.integers(4, 40))
    small = rng.normal(0, 1, (cells, max(2, cells * width // height), 3)).astype(np.float32)
    smooth = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    base = np.array(random_colour(rng), dtype=np.float32)
    return base + smooth * rng.uniform(10, 45)


def stripes(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Tiles, planks, fences."""
    a = np.array(random_colour(rng))
    b = a * rng.uniform(0.4, 0.9) + np.array(random_colour(rng)) * rng.uniform(0.1, 0.4)
    period = rng.uniform(8, 50)
    angle = rng.uniform(0, np.pi)
    xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    phase = xs[None, :] * np.float32(np.cos(angle)) + ys[:, None] * np.float32(np.sin(angle))
    t = (np.sin(phase * np.float32(2 * np.pi / period)) > 0)[..., None]
    return np.where(t, a, b).astype(np.float32)


BASES = (gradient, noise_texture, stripes)
BASE_PROBS = (0.42, 0.43, 0.15)


def clutter(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    height, width = image.shape[:2]
    size = max(width, height)
    for _ in range(count):
        colour = random_colour(rng)
        kind = rng.integers(4)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:
            w, h = (int(v) for v in rng.integers(5, size // 3, 2))
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), int(rng.integers(3, size // 8)), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            axes = tuple(int(v) for v in rng.integers(3, size // 6, 2))
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(image, (x, y), axes, angle, 0, 360, colour, -1, cv2.LINE_AA)
        else:  # a bar, about as thick as a limb
            x2, y2 = x + int(rng.integers(-80, 81)), y + int(rng.integers(-80, 81))
            thick = int(rng.integers(2, 12))
            cv2.line(image, (x, y), (x2, y2), colour, thick, cv2.LINE_AA)


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    base = BASES[rng.choice(len(BASES), p=BASE_PROBS)](rng, width, height)
    image = np.clip(base, 0, 255).astype(np.uint8)
    clutter(rng, image, int(rng.integers(0, 14)))
    # Out-of-focus backgrounds are common behind people in photographs.
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.8, 3.0))
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return image
