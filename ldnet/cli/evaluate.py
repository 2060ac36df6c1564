"""`ldnet evaluate`: official metrics from a predictions file and an annotation file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

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
        + "; ".join(f"{name}: {text}" for name, text in FORMATS.items())
        + ".",
    )
    parser.add_argument("--dataset", required=True, choices=list(FORMATS))
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
    from ldnet.data.keypoints import KEYPOINT_SETS
    from ldnet.evaluation import (
        EvaluationInputError,
        evaluate_coco,
        evaluate_crowdpose,
        evaluate_mpii,
        read_coco_results,
        read_mpii_preds,
    )

    if not ann.is_file():
        raise EvaluationInputError(f"annotation file {ann} does not exist")
    if dataset == "mpii":
        preds, one_based = read_mpii_preds(results)
        return evaluate_mpii(preds, ann, one_based=one_based)
    entries = read_coco_results(results, KEYPOINT_SETS[dataset].num_joints)
    evaluate = evaluate_coco if dataset == "coco" else evaluate_crowdpose
    return evaluate(entries, ann, source=f"results file {results}")


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
        unit = "PCKh, %" if args.dataset == "mpii" else "OKS"
        print(format_metrics_table(metrics, title=f"{args.dataset} ({unit}): {args.results}"))
    return 0
