"""The three benchmarks as one table: name -> everything the code needs to know about it.

Code that would otherwise ask "which dataset?" looks the answer up here, so adding a
dataset is one new entry, not a hunt through a dozen branches (cf. MMPose's dataset metainfo,
without its registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ldnet.data.keypoints import COCO, CROWDPOSE, MPII, KeypointSet
from ldnet.data.readers import PoseAnnotations, read_coco, read_crowdpose, read_mpii
from ldnet.errors import LDNetError


@dataclass(frozen=True)
class DatasetKind:
    """One benchmark: its joint set, files, reader, evaluator and submission format."""

    name: str
    keypoint_set: KeypointSet
    # (root, split) -> (annotation file, image folder) in the seed's layout (DESIGN.md, 5).
    layout: Callable[[Path, str], tuple[Path, Path]]
    # (annotation file, image folder, **options) -> records (``ldnet.data.readers``).
    read: Callable[..., PoseAnnotations]
    # (root, annotation file) -> the file the evaluator scores against.
    ground_truth: Callable[[Path, Path], Path]
    # (predictions, ground-truth file, source name) -> the official metrics.
    evaluator: Callable[..., dict]
    # COCO-style benchmarks score people (AP over OKS): detections are rescored and
    # de-duplicated by OKS-NMS, and the submission is a COCO results list. MPII scores one
    # prediction per given person box (PCKh), in the annotation file's order.
    scores_people: bool
    prediction_file: str  # the submission file `ldnet test` writes
    main_metric: str  # decides the `best.pt` checkpoint
    input_size: tuple[int, int]  # (height, width), the reference recipe's
    train_split: str
    val_split: str

    @property
    def num_joints(self) -> int:
        return self.keypoint_set.num_joints

    def evaluate(self, predictions, ground_truth_file: Path, source: str = "results"):
        """Official metrics: ``predictions`` is a COCO results list (``scores_people``) or
        an (N, 16, 3) MPII array in our 0-based pixels."""
        return self.evaluator(predictions, ground_truth_file, source)

    def evaluate_file(self, results_file: Path, ground_truth_file: Path):
        """Official metrics of a saved submission: a COCO results json (``scores_people``),
        or for MPII a ``pred.mat`` (1-based, as HRNet writes it) or a json of (N, 16, 2)
        0-based joints."""
        from ldnet import evaluation

        if not self.scores_people:
            preds, one_based = evaluation.read_mpii_preds(results_file)
            return evaluation.evaluate_mpii(preds, ground_truth_file, one_based=one_based)
        entries = evaluation.read_coco_results(results_file, self.num_joints)
        return self.evaluate(entries, ground_truth_file, source=f"results file {results_file}")

    def write_predictions(self, path: Path, predictions) -> None:
        """The submission file, atomically: COCO results json or HRNet's ``pred.mat``."""
        from ldnet import evaluation

        if self.scores_people:
            evaluation.write_coco_results(path, predictions)
        else:
            evaluation.write_mpii_pred_mat(path, predictions[..., :2])


def _evaluate_coco(results, ground_truth_file: Path, source: str):
    from ldnet.evaluation import evaluate_coco

    return evaluate_coco(results, ground_truth_file, source=source)


def _evaluate_crowdpose(results, ground_truth_file: Path, source: str):
    from ldnet.evaluation import evaluate_crowdpose

    return evaluate_crowdpose(results, ground_truth_file, source=source)


def _evaluate_mpii(preds_px, ground_truth_file: Path, source: str):
    from ldnet.evaluation import evaluate_mpii

    return evaluate_mpii(preds_px, ground_truth_file)


def _coco_layout(root: Path, split: str) -> tuple[Path, Path]:
    return root / "annotations" / f"person_keypoints_{split}.json", root / "images" / split


def _crowdpose_layout(root: Path, split: str) -> tuple[Path, Path]:
    return root / "json" / f"crowdpose_{split}.json", root / "images"


def _mpii_layout(root: Path, split: str) -> tuple[Path, Path]:
    return root / "annot" / f"{split}.json", root / "images"


def _annotation_file_itself(root: Path, annotation_file: Path) -> Path:
    return annotation_file


def _mpii_gt_valid(root: Path, annotation_file: Path) -> Path:
    # HRNet's MPIIDataset.evaluate reads annot/gt_valid.mat beside the json files.
    return Path(annotation_file).parent / "gt_valid.mat"


DATASETS: dict[str, DatasetKind] = {
    kind.name: kind
    for kind in (
        DatasetKind(
            name="coco",
            keypoint_set=COCO,
            layout=_coco_layout,
            read=read_coco,
            ground_truth=_annotation_file_itself,
            evaluator=_evaluate_coco,
            scores_people=True,
            prediction_file="results.json",
            main_metric="AP",
            input_size=(256, 192),
            train_split="train2017",
            val_split="val2017",
        ),
        DatasetKind(
            name="mpii",
            keypoint_set=MPII,
            layout=_mpii_layout,
            read=read_mpii,
            ground_truth=_mpii_gt_valid,
            evaluator=_evaluate_mpii,
            scores_people=False,
            prediction_file="pred.mat",
            main_metric="Mean",
            input_size=(256, 256),
            train_split="train",
            val_split="valid",
        ),
        DatasetKind(
            name="crowdpose",
            keypoint_set=CROWDPOSE,
            layout=_crowdpose_layout,
            read=read_crowdpose,
            ground_truth=_annotation_file_itself,
            evaluator=_evaluate_crowdpose,
            scores_people=True,
            prediction_file="results.json",
            main_metric="AP",
            input_size=(256, 192),
            train_split="trainval",
            val_split="test",
        ),
    )
}


class UnknownDatasetError(LDNetError, ValueError):
    """A dataset name that is not in the table."""


def dataset_kind(name: str) -> DatasetKind:
    if name not in DATASETS:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}"
        )
    return DATASETS[name]
