"""Temporal smoothing of video keypoints: the One-Euro filter (Casiez, Roussel, Vogel,
"1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input in Interactive
Systems", CHI 2012), one per tracked person.

An exponential low-pass whose cutoff rises with speed: at rest the cutoff is
``min_cutoff_hz`` (little jitter), when a joint moves fast it is ``min_cutoff_hz + beta *
speed`` (little lag). Speed is the derivative, itself low-passed at ``d_cutoff_hz``. The
units here are image pixels and seconds, so ``beta`` is in 1/px.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    # Smoothing factor of an exponential filter with time constant 1 / (2 pi f_c).
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Filters an array of values (any shape), all with the same parameters."""

    def __init__(self, min_cutoff_hz: float = 1.0, beta: float = 0.01, d_cutoff_hz: float = 1.0):
        self.min_cutoff_hz, self.beta, self.d_cutoff_hz = min_cutoff_hz, beta, d_cutoff_hz
        self.value: np.ndarray | None = None
        self.derivative: np.ndarray | None = None
        self.time_s: float | None = None

    def __call__(self, value: np.ndarray, time_s: float) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self.value is None or self.time_s is None or time_s <= self.time_s:
            self.value, self.derivative, self.time_s = value.copy(), np.zeros_like(value), time_s
            return value.copy()
        dt_s = time_s - self.time_s
        raw_derivative = (value - self.value) / dt_s
        a_d = _alpha(self.d_cutoff_hz, dt_s)
        self.derivative = a_d * raw_derivative + (1 - a_d) * self.derivative
        cutoff = self.min_cutoff_hz + self.beta * np.abs(self.derivative)
        a = _alpha(cutoff, dt_s)
        self.value = a * value + (1 - a) * self.value
        self.time_s = time_s
        return self.value.copy()


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of (x, y, w, h) boxes: (N, 4), (M, 4) -> (N, M)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return inter / np.maximum(union, 1e-9)


class PoseSmoother:
    """One-Euro filters on the joint positions of people tracked from frame to frame.

    People are matched to the previous frame's tracks greedily by box IoU (at least
    ``min_iou``); an unmatched person starts a new track (unfiltered first frame), and a
    track unseen for ``max_missed`` frames is dropped. Confidences are left as they are.
    """

    def __init__(
        self,
        min_cutoff_hz: float = 1.0,
        beta: float = 0.01,
        d_cutoff_hz: float = 1.0,
        min_iou: float = 0.3,
        max_missed: int = 5,
    ):
        self.parameters = (min_cutoff_hz, beta, d_cutoff_hz)
        self.min_iou, self.max_missed = min_iou, max_missed
        self.tracks: list[dict] = []  # {"box", "filter", "missed"}

    def __call__(self, keypoints: np.ndarray, boxes: np.ndarray, time_s: float) -> np.ndarray:
        """Smoothed copy of ``keypoints`` (N, K, 3) of the people with ``boxes`` (N, 4)."""
        smoothed = np.array(keypoints, dtype=np.float64, copy=True)
        iou = box_iou(boxes, [t["box"] for t in self.tracks]) if self.tracks else None
        taken: set[int] = set()
        for person in range(len(smoothed)):
            track = None
            if iou is not None:
                for index in np.argsort(-iou[person]):
                    if index not in taken and iou[person, index] >= self.min_iou:
                        track = self.tracks[index]
                        taken.add(int(index))
                        break
            if track is None:
                track = {"filter": OneEuroFilter(*self.parameters)}
                self.tracks.append(track)
                taken.add(len(self.tracks) - 1)
            track["box"], track["missed"] = np.asarray(boxes[person], float), 0
            smoothed[person, :, :2] = track["filter"](smoothed[person, :, :2], time_s)
        for index, track in enumerate(self.tracks):
            if index not in taken:
                track["missed"] += 1
        self.tracks = [t for t in self.tracks if t["missed"] <= self.max_missed]
        return smoothed
