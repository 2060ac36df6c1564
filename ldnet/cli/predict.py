"""`ldnet predict SOURCE --weights W --output DIR`: poses on images, a folder, a video or a
camera; overlays and a COCO results file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ldnet.datasets import DATASETS
from ldnet.inference.backends import BACKENDS

from .common import CLIError, input_size, positive_int


def _box(text: str) -> list[float]:
    from ldnet.predict.boxes import BoxError, box_problem, parse_box

    try:
        values = parse_box(text)
    except BoxError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    problem = box_problem(values, (float("inf"), float("inf")))
    if problem:
        raise argparse.ArgumentTypeError(f"box {text!r} {problem}")
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="poses on an image, a folder, a video or a camera: overlays + COCO results json",
        description=(
            "Top-down pose estimation. Person boxes, in this order of preference: --box or "
            "--detections; --detector-onnx; OpenCV's HOG people detector; --whole-image "
            "treats each frame as one person. Writes overlay images (folder/image) or an "
            "overlay video (video/camera) and results.json in the COCO results format "
            "(an image named by its COCO id gets that image_id; video frames: frame index)."
        ),
    )
    parser.add_argument("source", help="image file, folder of images, video file or camera index")
    parser.add_argument(
        "--weights",
        required=True,
        type=Path,
        help="checkpoint (.pt), `ldnet export` .onnx, or an official HRNet / MMPose .pth "
        "(with --model and --input)",
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DIR")
    foreign = parser.add_argument_group(
        "official HRNet / MMPose weights (imported as they load, as `ldnet weights import`)"
    )
    foreign.add_argument("--model", help="the network the file holds (hrnet_w32)")
    foreign.add_argument("--input", type=input_size, metavar="HxW", help="its input size")
    foreign.add_argument(
        "--decoder",
        choices=["msra", "dark"],
        help="decode with this codec instead of the weights' own (imported: msra)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="pytorch")
    parser.add_argument(
        "--dataset",
        choices=list(DATASETS),
        help="the joint set expected; weights for another one are refused",
    )
    boxes = parser.add_argument_group("person boxes")
    boxes.add_argument(
        "--box", action="append", type=_box, metavar="X,Y,W,H", help="a person box (repeatable)"
    )
    boxes.add_argument("--detections", type=Path, help="COCO detection-results json")
    boxes.add_argument(
        "--detector-onnx",
        type=Path,
        metavar="FILE",
        help="ONNX person detector (its inputs and outputs: docs/inference.md)",
    )
    boxes.add_argument("--whole-image", action="store_true", help="each frame is one person")
    boxes.add_argument(
        "--box-threshold", type=float, default=0.3, help="minimum detection score (0.3)"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.3, help="joints below this confidence are not drawn"
    )
    parser.add_argument("--no-flip", action="store_true", help="no flip test (2x faster)")
    parser.add_argument("--no-overlay", action="store_true", help="write only results.json")
    parser.add_argument(
        "--smooth", action="store_true", help="One-Euro smoothing of keypoints (video, camera)"
    )
    parser.add_argument("--smooth-min-cutoff", type=float, default=1.0, metavar="HZ")
    parser.add_argument("--smooth-beta", type=float, default=0.01, metavar="PER_PX")
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    parser.add_argument("--threads", type=positive_int, help="intra-op threads")
    parser.add_argument("--device", default="cpu", help="PyTorch device (cpu, cuda)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def box_provider(args):
    """The person-box source the options ask for (see the order in the description)."""
    import cv2
    import numpy as np

    from ldnet.predict.boxes import DetectionFile, check_boxes
    from ldnet.predict.detectors import HogPersonDetector, OnnxPersonDetector, hog_available

    chosen = [args.box is not None, args.detections is not None, args.whole_image]
    if sum(chosen) > 1:
        raise CLIError("choose one of --box, --detections and --whole-image")
    if args.whole_image:
        return lambda frame: None
    if args.box:
        caller = np.array(args.box, dtype=np.float64)
        return lambda frame: (
            check_boxes(caller, frame.image.shape, "--box"),
            np.ones(len(caller)),
        )
    if args.detections:
        detections = DetectionFile(args.detections, args.box_threshold)
        if detections.dropped:
            print(
                f"note: {args.detections}: {detections.dropped} detection(s) with zero or "
                "negative size left out",
                file=sys.stderr,
            )
        return lambda frame: detections(frame.image_id)
    if args.detector_onnx:
        detector = OnnxPersonDetector(args.detector_onnx, args.box_threshold, threads=args.threads)
    elif hog_available():
        detector = HogPersonDetector()
    else:
        print(
            f"note: OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 dropped it): "
            "each frame is taken as one person; give --detector-onnx or --detections for "
            "several people",
            file=sys.stderr,
        )
        return lambda frame: None

    def detect(frame):
        boxes, scores = detector(frame.image)
        keep = scores >= args.box_threshold
        return boxes[keep], scores[keep]

    return detect


def build_estimator(args):
    """The estimator of ``--weights``; an official HRNet / MMPose file is imported in memory
    with ``--model`` / ``--input``, and ``--decoder`` replaces the recorded codec."""
    from dataclasses import replace

    from ldnet.inference import load_model, make_backend
    from ldnet.predict import PoseEstimator

    flip = not args.no_flip
    if args.model is None and args.input is None and args.decoder is None:
        return PoseEstimator.from_weights(
            args.weights,
            backend=args.backend,
            dataset=args.dataset,
            threads=args.threads,
            device=args.device,
            flip=flip,
        )
    if Path(args.weights).suffix.lower() == ".onnx":
        raise CLIError(f"{args.weights}: --model, --input and --decoder go with a checkpoint")
    model, record = load_model(
        args.weights,
        args.dataset,
        model=args.model,
        input_size=args.input,
        decoder=args.decoder,
    )
    if args.decoder:
        record = replace(record, codec=args.decoder)
    runner = make_backend(
        model, args.backend, record.input_size, device=args.device, threads=args.threads
    )
    return PoseEstimator(runner, record, flip=flip)


def run(args) -> int:
    import torch

    from ldnet.lineage.download import resolve_weights
    from ldnet.predict import PredictOptions, open_source, predict_source
    from ldnet.predict.smoothing import PoseSmoother

    args.weights = resolve_weights(args.weights)  # a path, or a catalogue name fetched once
    if args.threads:
        torch.set_num_threads(args.threads)
    source = open_source(args.source)
    estimator = build_estimator(args)
    provider = box_provider(args)
    estimator.warm_up()
    smoother = None
    if args.smooth and source.kind != "image":
        smoother = PoseSmoother(args.smooth_min_cutoff, args.smooth_beta)
    options = PredictOptions(
        output_dir=args.output,
        overlay=not args.no_overlay,
        threshold=args.threshold,
        smoother=smoother,
        max_frames=args.max_frames,
        progress=not args.quiet,
    )
    summary = predict_source(estimator, source, provider, options)
    for name, reason in summary.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"{summary.frames} frame(s), {summary.people} people, {summary.frames_per_s:.1f} "
        f"frames/s end to end ({estimator.backend.name}, "
        f"{'flip test' if not args.no_flip else 'no flip'}); {len(summary.skipped)} skipped"
        + ("; interrupted" if summary.interrupted else "")
    )
    images = [p for p in summary.outputs if p.suffix.lower() not in (".json", ".mp4")]
    if images:
        print(f"wrote {len(images)} overlay image(s) to {args.output}")
    for path in summary.outputs:
        if path not in images:
            print(f"wrote {path}")
    return 0
