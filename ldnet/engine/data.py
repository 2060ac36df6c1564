"""Datasets of an experiment config: which files, which split, train or test mode.

Every file a run will need is checked when the run starts (``check_test_files``), so a wrong
``data.root`` stops a training run in its first second, not at its first validation.
"""

from __future__ import annotations

from pathlib import Path

from ldnet.config import ConfigError, ExperimentConfig
from ldnet.data.dataset import TopDownDataset
from ldnet.data.readers import PoseAnnotations, records_with_keypoints
from ldnet.datasets import DatasetKind
from ldnet.inference import ModelRecord


def record_of(config: ExperimentConfig) -> ModelRecord:
    """The record of the weights this config trains: network, joint set, codec, convention.
    Targets are encoded with its codec, and every test-time path decodes with it."""
    kind = config.data.kind
    return ModelRecord(
        model=config.model.name,
        num_joints=kind.num_joints,
        dataset=kind.name,
        input_size=tuple(config.data.input_size),
        codec=config.test.decoder,
        sigma=config.data.sigma,
        convention=config.data.convention,
    )


def detection_path(config: ExperimentConfig) -> Path:
    """``test.detection_file``: a relative path is taken under ``data.root`` (so one
    ``data.root=...`` override moves every file of the run), an absolute one as it is."""
    if config.test.detection_file is None:
        raise ConfigError("test.use_gt_boxes is false but test.detection_file is not set")
    path = Path(config.test.detection_file)
    return path if path.is_absolute() else Path(config.data.root) / path


def split_files(config: ExperimentConfig, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of ``split`` in the seed's layout under data.root."""
    root = Path(config.data.root)
    if not root.is_dir():
        raise ConfigError(f"data.root: dataset folder {str(root)!r} does not exist")
    return config.data.kind.layout(root, split)


def check_test_files(config: ExperimentConfig, split: str | None = None) -> None:
    """Stop, naming the file, when validation on ``split`` would fail for a missing file."""
    kind = config.data.kind
    annotation_file, image_dir = split_files(config, split or config.data.val_split)
    for path, what in ((annotation_file, "annotation file"), (image_dir, "image folder")):
        if not path.exists():
            raise ConfigError(f"data.root: {what} {str(path)!r} does not exist")
    if not config.test.use_gt_boxes:
        detections = detection_path(config)
        if not detections.is_file():
            raise ConfigError(
                f"test.detection_file: {str(detections)!r} does not exist (a relative path is "
                f"taken under data.root {config.data.root!r})"
            )
    ground_truth = kind.ground_truth(Path(config.data.root), annotation_file)
    if not ground_truth.is_file():
        raise ConfigError(
            f"data.root: {kind.name} ground truth {str(ground_truth)!r} does not exist "
            "(validation scores against it)"
        )


def read_split(
    config: ExperimentConfig,
    split: str,
    input_size: tuple[int, int],
    detections: str | Path | None = None,
    files: tuple[Path, Path] | None = None,
) -> PoseAnnotations:
    """People of ``split`` in the seed's layout under ``data.root``, or of ``files``
    (annotation file, image folder) when given: any set in the dataset's format."""
    annotation_file, image_dir = files or split_files(config, split)
    kwargs = {"input_size": tuple(input_size)}
    if detections:
        kwargs["detections"] = detections
        kwargs["score_threshold"] = config.test.box_score_threshold
    return config.data.kind.read(annotation_file, image_dir, **kwargs)


def train_dataset(config: ExperimentConfig, seed: int) -> TopDownDataset:
    record = record_of(config)
    annotations = read_split(config, config.data.train_split, record.input_size)
    # As the HRNet lineage: people without labelled keypoints give no training signal.
    annotations.records = records_with_keypoints(annotations.records)
    if not annotations.records:
        raise ConfigError(f"{annotations.annotation_file}: no person with keypoints to train on")
    return TopDownDataset(annotations, record.build_codec(), augment=config.data.augment, seed=seed)


def test_dataset(
    config: ExperimentConfig,
    record: ModelRecord,
    split: str | None = None,
    detections: str | Path | None = None,
    files: tuple[Path, Path] | None = None,
) -> TopDownDataset:
    """People of a split, cropped for the weights described by ``record``: person boxes
    from ``detections``, else from the config (ground truth or ``test.detection_file``)."""
    if detections is None and not config.test.use_gt_boxes:
        detections = detection_path(config)
    split = split or config.data.val_split
    annotations = read_split(config, split, record.input_size, detections, files)
    return TopDownDataset(annotations, record.build_codec(), augment=None)


def ground_truth_file(config: ExperimentConfig, dataset: TopDownDataset) -> Path:
    kind: DatasetKind = config.data.kind
    return kind.ground_truth(Path(config.data.root), dataset.annotations.annotation_file)
