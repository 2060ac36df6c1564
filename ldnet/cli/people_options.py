"""What `ldnet predict` and `ldnet serve` share about finding people and fetching weights by
name: the detector options, the detector they choose (with its one line), and the one line
naming what is about to be downloaded."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import CLIError


def add_detector_options(group) -> None:
    group.add_argument(
        "--detector",
        metavar="NAME|FILE.onnx|hog",
        help="person detector: a catalogue name (ldnet weights list, kind detector), an ONNX "
        "file, or hog. Default: a cached catalogue detector, else yolox_m_humanart fetched "
        "now, else (offline) OpenCV's HOG",
    )
    group.add_argument(
        "--detector-onnx", dest="detector", metavar="FILE", help="the same as --detector FILE"
    )
    group.add_argument(
        "--box-threshold", type=float, default=0.3, help="minimum detection score (0.3)"
    )
    group.add_argument(
        "--box-nms",
        type=float,
        metavar="IOU",
        help="NMS IoU of the detector's boxes (default: YOLOX 0.65, as its config; "
        "Ultralytics and HOG 0.45)",
    )


def person_finder(args, threads: int | None = None):
    """image -> (boxes, scores) of the chosen detector, or None (the whole image is one
    person); the line saying which detector runs goes to stderr."""
    from ldnet.predict.detector_choice import choose_detector

    if not 0 <= args.box_threshold <= 1 or not 0 <= (args.box_nms or 0) <= 1:
        raise CLIError("--box-threshold and --box-nms must lie in [0, 1]")
    chosen = choose_detector(
        args.detector,
        score_threshold=args.box_threshold,
        nms_iou=args.box_nms,
        threads=threads,
        progress=not getattr(args, "quiet", False),
    )
    print(chosen.line, file=sys.stderr)
    if chosen.detector is None:
        return None
    detector = chosen.detector

    def detect(image):
        boxes, scores = detector(image)
        keep = scores >= args.box_threshold
        return boxes[keep], scores[keep]

    return detect


def announce_fetches(weights, detector, *, uses_detector: bool, default: bool = False) -> None:
    """One line naming the catalogue files about to be downloaded and their sizes (nothing
    when all are cached, or when downloads are off and nothing will be tried); ``default``:
    the weights were not asked for, which the line then says."""
    from ldnet.lineage.catalog import find
    from ldnet.lineage.download import cache_dir, is_cached, offline, size_text
    from ldnet.predict.detector_choice import detector_entry

    wanted = []
    pose = None if weights is None or Path(str(weights)).exists() else find(str(weights))
    kind = "the default pose weights for real photos" if default else "pose weights"
    missing = pose is not None and pose.downloadable and not is_cached(pose)
    if missing and not offline():
        wanted.append(f"{pose.name} ({kind}, {size_text(pose)})")
    elif default and not missing:
        print(f"weights: {weights} ({kind})", file=sys.stderr)
    if offline():
        return  # nothing will be fetched; a missing name is reported as it is asked for
    if uses_detector:
        entry = detector_entry(detector)
        if entry is not None and entry.downloadable and not is_cached(entry):
            wanted.append(f"{entry.name} (person detector, {size_text(entry)})")
    if wanted:
        print(f"fetching {' and '.join(wanted)} into {cache_dir()}", file=sys.stderr)
