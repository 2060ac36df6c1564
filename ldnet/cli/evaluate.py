"""`ldnet evaluate`: official metrics from a predictions file and an annotation file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ldnet.datasets import DATASETS, dataset_kind

FORMATS = {
    "coco": "COCO keypoint results JSON vs person_keypoints_*.json",
    "crowdpose": "COCO keypoint results JSON (14 joints) vs crowdpose_*.json",
    "mpii": "pred.mat (HRNet, 1-based) or a JSON list of (16, 2) 0-based joints vs gt_valid.mat",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a predictions file (COCO AP, CrowdPose AP, MPII PCKh)",
        description="Compute the official metrics of saved predictions, without a model. "
        + "; ".join(f"{name}: {FORMATS[name]}" for name in DATASETS)
        + ".",
    )
    parser.add_argument("--dataset", required=True, choices=list(DATASETS))
    parser.add_argument(
        "--ann",
        required=True,
        type=Path,
        metavar="FILE",
        help="annotation file (COCO/CrowdPose json, MPII gt_valid.mat)",
    )
    parser.add_argument(
        "--results", required=True, type=Path, metavar="FILE", help="predictions file"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object: metric name -> value"
    )
    parser.set_defaults(run=run)


def evaluate_files(dataset: str, ann: Path, results: Path):
    """The metrics of a predictions file (bad files raise ``EvaluationInputError``)."""
    from ldnet.evaluation import EvaluationInputError

    kind = dataset_kind(dataset)
    if not ann.is_file():
        raise EvaluationInputError(f"annotation file {ann} does not exist")
    return kind.evaluate_file(results, ann)


def run(args) -> int:
    import sys

    from ldnet.evaluation import format_metrics_table, metrics_to_json

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_files(args.dataset, args.ann, args.results)
    for warning in caught:
        print(f"ldnet evaluate: warning: {warning.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics_to_json(metrics)))
    else:
        unit = "OKS" if dataset_kind(args.dataset).scores_people else "PCKh, %"
        print(format_metrics_table(metrics, title=f"{args.dataset} ({unit}): {args.results}"))
    return 0
