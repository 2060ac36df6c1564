"""Which person detector runs: the one asked for, else the best one at hand.

``--detector`` (and ``PoseEstimator(detector=...)``) takes ``hog``, an ONNX file, or a
catalogue name (``ldnet weights list``, kind detector: fetched, verified and cached on first
use). Without it, the first available of: a catalogue detector already in the cache (the
default, ``yolox_m_humanart``, first), the default fetched now, OpenCV's HOG detector. HOG
is only the fallback for a machine that cannot fetch: it misses sitting, small and partly
hidden people, which is why it is not the default. Whatever is chosen comes with one line
saying so, for the command line to print.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldnet.errors import MissingExtra, require_extra
from ldnet.lineage.catalog import DEFAULT_DETECTOR, WeightsEntry, catalog, find
from ldnet.lineage.download import (
    DownloadError,
    cache_dir,
    get,
    is_cached,
    offline,
    size_text,
)

from .detectors import HogPersonDetector, hog_available
from .errors import DetectorError
from .onnx_detector import OnnxPersonDetector

HOG = "hog"
# image (H, W, 3) BGR -> (boxes (N, 4) x, y, w, h, scores (N,))
Detector = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass
class ChosenDetector:
    detector: Detector | None  # None: no detector at all; each image is one person
    line: str  # "people: ...", the one line that says which detector runs


def looks_like_file(spec: str | os.PathLike) -> bool:
    text = str(spec)
    return Path(text).exists() or "/" in text or os.sep in text or text.lower().endswith(".onnx")


def detector_entry(spec: str | os.PathLike | None, cache=None) -> WeightsEntry | None:
    """The catalogue entry a ``--detector`` value stands for; None for ``hog`` or a file.
    Without a value: the first cached catalogue detector (the default first), else the
    default itself (to be fetched)."""
    if spec is None:
        detectors = [entry for entry in catalog().values() if entry.kind == "detector"]
        detectors.sort(key=lambda entry: entry.name != DEFAULT_DETECTOR)
        cached = [entry for entry in detectors if is_cached(entry, cache)]
        return cached[0] if cached else find(DEFAULT_DETECTOR)
    if str(spec).lower() == HOG or looks_like_file(spec):
        return None
    entry = find(str(spec))
    if entry is None:
        raise DetectorError(
            f"--detector {spec}: no such file or known detector name (ONNX file, 'hog', or "
            "a detector of ldnet weights list)"
        )
    if entry.kind != "detector":
        raise DetectorError(
            f"--detector {spec}: {entry.description}, not a person detector (kind "
            f"{entry.kind}); detectors in ldnet weights list have kind detector"
        )
    return entry


def choose_detector(
    spec: str | os.PathLike | None = None,
    *,
    score_threshold: float = 0.3,
    nms_iou: float | None = None,
    threads: int | None = None,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
) -> ChosenDetector:
    """Load the detector ``spec`` names (see the module docstring for the order without
    one). A named detector that cannot be had is an error; the default falls back to HOG."""
    onnx_options = {"score_threshold": score_threshold, "nms_iou": nms_iou, "threads": threads}
    if spec is not None and str(spec).lower() == HOG:
        detector = HogPersonDetector(**({} if nms_iou is None else {"nms_iou": nms_iou}))
        return ChosenDetector(detector, f"people: {detector.describe()} (asked for)")
    entry = detector_entry(spec, cache)
    if spec is not None and entry is None:
        detector = OnnxPersonDetector(spec, **onnx_options)
        return ChosenDetector(detector, f"people: {detector.describe()}")
    if spec is None:
        try:  # the default runs in ONNX Runtime: a core install gets HOG
            require_extra("deploy", "the YOLOX person detector")
        except MissingExtra as missing:
            return fallback(f"{missing}, then the default is {entry.name}", nms_iou, "core-install")
    if spec is None and not is_cached(entry, cache):
        try:  # the default, fetched now; a machine that cannot fetch gets HOG
            detector = _catalogue_detector(entry, cache, progress, onnx_options)
        except DownloadError as error:
            why = "LDNET_OFFLINE is set" if offline() else f"it could not be fetched: {error}"
            why_not = (
                f"{entry.name} is not in {cache_dir(cache)} and {why}; `ldnet weights get "
                f"{entry.name}` ({size_text(entry)}) gives the modern detector"
            )
            return fallback(why_not, nms_iou)
    else:
        detector = _catalogue_detector(entry, cache, progress, onnx_options)
    return ChosenDetector(detector, f"people: {detector.describe()}")


def _catalogue_detector(entry, cache, progress, onnx_options) -> OnnxPersonDetector:
    path = get(entry, cache, progress=progress)
    try:
        return OnnxPersonDetector(path, input_hw=entry.input_size, name=entry.name, **onnx_options)
    except DetectorError:
        if entry.hash_of == "checkpoint":
            # No hash vouched for this file: one that is not the detector it should be is
            # not kept (a pinned file matched its hash, so it stays to be looked at).
            path.unlink(missing_ok=True)
        raise


def fallback(why_not: str, nms_iou: float | None, label: str = "offline") -> ChosenDetector:
    """HOG (or, in OpenCV 5, the whole image), with the line saying why the default detector
    does not run (``why_not``: the reason and what gives it; ``label``: which fallback)."""
    if not hog_available():
        return ChosenDetector(
            None,
            f"people: none, each frame is taken as one person (no HOG in this OpenCV; {why_not})",
        )
    detector = HogPersonDetector(**({} if nms_iou is None else {"nms_iou": nms_iou}))
    line = f"people: {detector.describe()}, the {label} fallback: {why_not}"
    return ChosenDetector(detector, line)
