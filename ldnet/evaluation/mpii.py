"""MPII PCKh, following the protocol of the HRNet reference code (``MPIIDataset.evaluate``).

Ground truth is ``gt_valid.mat`` (fields ``dataset_joints``, ``jnt_missing`` (16, N),
``pos_gt_src`` (16, 2, N), ``headboxes_src`` (2, 2, N)), in MATLAB's 1-based pixel
coordinates, people in the order of ``valid.json``. The protocol:

- head size = 0.6 x the diagonal of the head box (``SC_BIAS = 0.6``);
- a joint is correct when ``||pred - gt|| / head_size <= threshold`` (``<=``, not ``<``);
- joints marked missing count neither as correct nor in the denominator;
- PCKh per joint = 100 x correct / visible; the table's limbs average left and right;
- ``Mean`` weights the joints by their visible count (= all correct / all visible) over every
  joint except the pelvis and the thorax (HRNet masks indices 6 and 7);
- ``Mean@0.1`` is the same mean at threshold exactly 0.1. HRNet reads ``pckAll[11]`` of
  ``np.arange(0, 0.51, 0.01)``, which is the 0.11 threshold; DESIGN.md fixes 0.1, so ours is
  a touch lower than HRNet's printout when some joint lies between 0.1 and 0.11 head sizes.

A joint with no visible instance has PCKh NaN (HRNet divides by zero there too); it weighs
nothing in the means.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .results import EvaluationInputError, _check_mpii_array, read_mat

HEAD_SIZE_FACTOR = 0.6  # HRNet's SC_BIAS: head size = 0.6 x head-box diagonal
PCKH_THRESHOLD = 0.5
PCKH_STRICT_THRESHOLD = 0.1

# Joint abbreviations of gt_valid.mat's `dataset_joints`, in the MPII joint-id order that
# ldnet.data.keypoints.MPII uses.
MPII_MAT_JOINTS = (
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
    "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri",
)  # fmt: skip
EXCLUDED_FROM_MEAN = ("pelv", "thor")
# Table rows: name -> the joints averaged (HRNet: `0.5 * (left + right)`).
MPII_TABLE_ROWS = (
    ("Head", ("head",)),
    ("Shoulder", ("lsho", "rsho")),
    ("Elbow", ("lelb", "relb")),
    ("Wrist", ("lwri", "rwri")),
    ("Hip", ("lhip", "rhip")),
    ("Knee", ("lkne", "rkne")),
    ("Ankle", ("lank", "rank")),
)
MPII_METRIC_NAMES = tuple(name for name, _ in MPII_TABLE_ROWS) + ("Mean", "Mean@0.1")


@dataclass(frozen=True)
class MPIIGroundTruth:
    """The arrays of ``gt_valid.mat``, people first, joints in ``joint_names`` order."""

    joint_names: tuple[str, ...]  # gt_valid.mat abbreviations, e.g. "rank"
    joints_px: np.ndarray  # (N, 16, 2) float64, 1-based (MATLAB) pixels
    missing: np.ndarray  # (N, 16) bool
    head_boxes_px: np.ndarray  # (N, 2, 2): [top-left, bottom-right] x [x, y], 1-based

    @property
    def head_sizes_px(self) -> np.ndarray:
        diagonal = self.head_boxes_px[:, 1, :] - self.head_boxes_px[:, 0, :]
        return HEAD_SIZE_FACTOR * np.linalg.norm(diagonal, axis=1)


def _joint_names(dataset_joints) -> tuple[str, ...]:
    """``dataset_joints`` as loadmat gives it (a cell array of char arrays) -> plain strings."""
    names = []
    for item in np.asarray(dataset_joints, dtype=object).reshape(-1):
        while isinstance(item, np.ndarray):
            item = item.reshape(-1)[0] if item.size else ""
        names.append(str(item))
    return tuple(names)


def load_mpii_gt(path: str | os.PathLike) -> MPIIGroundTruth:
    """Read ``gt_valid.mat``; raise ``EvaluationInputError`` naming the file and the problem."""
    path = Path(path)
    mat = read_mat(path, "annotation file", " (expected gt_valid.mat)")
    fields = ("dataset_joints", "jnt_missing", "pos_gt_src", "headboxes_src")
    absent = [field for field in fields if field not in mat]
    if absent:
        raise EvaluationInputError(
            f"annotation file {path} lacks {', '.join(absent)} (expected HRNet's gt_valid.mat)"
        )
    names = _joint_names(mat["dataset_joints"])
    if sorted(names) != sorted(MPII_MAT_JOINTS):
        raise EvaluationInputError(
            f"annotation file {path}: dataset_joints {names} are not the 16 MPII joints"
        )
    missing = np.asarray(mat["jnt_missing"])
    joints = np.asarray(mat["pos_gt_src"], dtype=np.float64)
    boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
    count = missing.shape[-1] if missing.ndim == 2 else -1
    if (
        missing.shape != (16, count)
        or joints.shape != (16, 2, count)
        or boxes.shape != (2, 2, count)
    ):
        raise EvaluationInputError(
            f"annotation file {path}: inconsistent shapes jnt_missing {missing.shape}, "
            f"pos_gt_src {joints.shape}, headboxes_src {boxes.shape} "
            "(expected (16, N), (16, 2, N), (2, 2, N))"
        )
    return MPIIGroundTruth(
        joint_names=names,
        joints_px=np.ascontiguousarray(joints.transpose(2, 0, 1)),
        missing=missing.T.astype(bool),
        head_boxes_px=np.ascontiguousarray(boxes.transpose(2, 0, 1)),
    )


def pckh_per_joint(preds_px_1based: np.ndarray, gt: MPIIGroundTruth, threshold: float):
    """(PCKh per joint in %, visible count per joint), both (16,), in ``gt.joint_names`` order."""
    if preds_px_1based.shape != gt.joints_px.shape:
        raise EvaluationInputError(
            f"{preds_px_1based.shape[0]} predicted people for {gt.joints_px.shape[0]} "
            "in the ground truth (pred.mat must follow gt_valid.mat's order)"
        )
    visible = ~gt.missing
    error_px = np.linalg.norm(preds_px_1based - gt.joints_px, axis=2)  # (N, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = error_px / gt.head_sizes_px[:, None]
    correct = (normalised <= threshold) & visible
    count = visible.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pckh = 100.0 * correct.sum(axis=0) / count
    return pckh, count


def mpii_pckh_table(preds_px_1based: np.ndarray, gt: MPIIGroundTruth) -> OrderedDict[str, float]:
    """The HRNet PCKh table from 1-based predictions: ``MPII_METRIC_NAMES`` -> percent."""
    index = {name: i for i, name in enumerate(gt.joint_names)}
    in_mean = np.array([name not in EXCLUDED_FROM_MEAN for name in gt.joint_names])
    table = OrderedDict()
    pckh, count = pckh_per_joint(preds_px_1based, gt, PCKH_THRESHOLD)
    for row, joints in MPII_TABLE_ROWS:
        table[row] = float(np.mean([pckh[index[j]] for j in joints]))
    for name, threshold in (("Mean", PCKH_THRESHOLD), ("Mean@0.1", PCKH_STRICT_THRESHOLD)):
        pckh, count = pckh_per_joint(preds_px_1based, gt, threshold)
        weights = count * in_mean
        total = weights.sum()
        # sum(PCKh_j * count_j / total) over the counted joints = all correct / all visible.
        table[name] = float(np.nansum(pckh * weights) / total) if total else float("nan")
    return table


def evaluate_mpii(
    preds_px: np.ndarray, gt_file: str | os.PathLike, *, one_based: bool = False
) -> OrderedDict[str, float]:
    """MPII PCKh table of in-memory predictions against ``gt_valid.mat``.

    ``preds_px``: (N, 16, 2) or (N, 16, 3) in gt_valid.mat's person order. By default the
    coordinates are ours (0-based, as the decoder and the MPII json files give them) and 1 is
    added before comparing with the 1-based ground truth; pass ``one_based=True`` for values
    read from a ``pred.mat``. Returns ``MPII_METRIC_NAMES`` -> percent.
    """
    preds = _check_mpii_array(preds_px, "predictions")
    gt = load_mpii_gt(gt_file)
    if not one_based:
        preds = preds + 1.0
    if preds.shape[0] != gt.joints_px.shape[0]:
        raise EvaluationInputError(
            f"{preds.shape[0]} predicted people for {gt.joints_px.shape[0]} in annotation file "
            f"{gt_file} (predictions must follow its order)"
        )
    # Our predictions are in ldnet.data.keypoints.MPII order, which is the mat's canonical
    # order; a mat listing the joints differently is followed by reordering the predictions.
    order = [MPII_MAT_JOINTS.index(name) for name in gt.joint_names]
    return mpii_pckh_table(preds[:, order, :], gt)
