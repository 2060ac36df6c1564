"""`ldnet test CONFIG --weights W`: flip test, decoding, boxes, rescoring, OKS-NMS, metrics."""

from __future__ import annotations

from pathlib import Path

from .common import CLIError
from .train import add_config_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "test",
        help="test a checkpoint on a split and print the official metrics",
        description=(
            "Predict every person of a split (ground-truth boxes or a detection file), then "
            "score with the official evaluator. Writes results.json (COCO results format, "
            "as a test-dev submission) or pred.mat (MPII), and metrics.json, to a run folder."
        ),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--weights",
        required=True,
        type=Path,
        help="checkpoint (.pt), an official HRNet / MMPose .pth (imported as the config says), "
        "or an `ldnet export onnx` file (.onnx, float or --int8; run by ONNX Runtime)",
    )
    parser.add_argument("--split", help="split to test (default: data.val_split)")
    parser.add_argument("--detections", help="COCO detection-results file (person boxes)")
    parser.add_argument(
        "--ann",
        type=Path,
        help="annotation file to test on instead of the split's (needs --images)",
    )
    parser.add_argument("--images", type=Path, help="image folder of --ann")
    parser.add_argument("--run-dir", type=Path, help="output folder (default: a new run folder)")
    parser.add_argument("--json", action="store_true", help="print metrics as one JSON object")
    parser.set_defaults(run=run)


def run(args) -> int:
    import json

    from ldnet.config import load_config
    from ldnet.engine.runs import new_run_dir
    from ldnet.engine.test import test
    from ldnet.evaluation import format_metrics_table, metrics_to_json
    from ldnet.lineage.download import resolve_weights

    args.weights = resolve_weights(args.weights)  # a path, or a catalogue name fetched once
    if (args.ann is None) != (args.images is None):
        raise CLIError("--ann and --images go together")
    files = (args.ann, args.images) if args.ann else None
    config = load_config(args.config, args.overrides)
    run_dir = args.run_dir or new_run_dir(config.output_dir, f"{config.name}-test")
    metrics = test(
        config,
        args.weights,
        run_dir,
        args.split,
        args.detections,
        args.device,
        progress=not (args.quiet or args.json),
        files=files,
    )
    if args.json:
        print(json.dumps(metrics_to_json(metrics)))
    else:
        print(f"run folder: {run_dir}")
        print(format_metrics_table(metrics) if metrics else "no ground truth to score against")
    return 0
