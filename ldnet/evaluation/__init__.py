"""Official metrics: COCO keypoint AP/AR, CrowdPose AP by crowd index, MPII PCKh.

The trainer calls the ``evaluate_*`` functions with in-memory predictions; nothing is written
and re-read between functions. ``write_coco_results`` and ``write_mpii_pred_mat`` save
predictions in the formats ``ldnet evaluate`` (and the HRNet lineage) read.
"""

from .coco import COCO_METRIC_NAMES, evaluate_coco
from .crowdpose import CROWDPOSE_METRIC_NAMES, evaluate_crowdpose
from .mpii import MPII_METRIC_NAMES, MPIIGroundTruth, evaluate_mpii, load_mpii_gt
from .results import (
    EvaluationInputError,
    read_coco_results,
    read_mpii_preds,
    write_coco_results,
    write_mpii_pred_mat,
)
from .table import format_metrics_table, metrics_to_json

__all__ = [
    "COCO_METRIC_NAMES",
    "CROWDPOSE_METRIC_NAMES",
    "MPII_METRIC_NAMES",
    "EvaluationInputError",
    "MPIIGroundTruth",
    "evaluate_coco",
    "evaluate_crowdpose",
    "evaluate_mpii",
    "format_metrics_table",
    "load_mpii_gt",
    "metrics_to_json",
    "read_coco_results",
    "read_mpii_preds",
    "write_coco_results",
    "write_mpii_pred_mat",
]
