"""Datasets of an experiment config: which files, which split, train or test mode."""

from __future__ import annotations

from pathlib import Path

from ldnet.config import ConfigError, ExperimentConfig
from ldnet.data.codecs import build_codec
from ldnet.data.dataset import TopDownDataset
from ldnet.data.readers import PoseAnnotations, read_dataset, records_with_keypoints, seed_paths


def codec_of(config: ExperimentConfig, decoder: str | None = None):
    return build_codec(
        decoder or config.test.decoder, tuple(config.data.input_size), sigma=config.data.sigma
    )


def _check_root(config: ExperimentConfig) -> Path:
    root = Path(config.data.root)
    if not root.is_dir():
        raise ConfigError(f"data.root: dataset folder {str(root)!r} does not exist")
    return root


def read_split(
    config: ExperimentConfig,
    split: str,
    detections: str | None = None,
    files: tuple[Path, Path] | None = None,
) -> PoseAnnotations:
    """People of ``split`` in the seed's layout under ``data.root``, or of ``files``
    (annotation file, image folder) when given: any set in the dataset's format."""
    if files is None:
        annotation_file, image_dir = seed_paths(config.data.dataset, _check_root(config), split)
    else:
        annotation_file, image_dir = files
    kwargs = {"input_size": tuple(config.data.input_size)}
    if detections:
        kwargs["detections"] = detections
        kwargs["score_threshold"] = config.test.box_score_threshold
    return read_dataset(config.data.dataset, annotation_file, image_dir, **kwargs)


def train_dataset(config: ExperimentConfig, seed: int) -> TopDownDataset:
    annotations = read_split(config, config.data.train_split)
    # As the HRNet lineage: people without labelled keypoints give no training signal.
    annotations.records = records_with_keypoints(annotations.records)
    if not annotations.records:
        raise ConfigError(f"{annotations.annotation_file}: no person with keypoints to train on")
    # Targets are encoded by the same codec that decodes at test time (one half-pixel
    # convention for both directions).
    return TopDownDataset(annotations, codec_of(config), augment=config.data.augment, seed=seed)


def test_dataset(
    config: ExperimentConfig,
    split: str | None = None,
    detections: str | None = None,
    files: tuple[Path, Path] | None = None,
) -> TopDownDataset:
    if detections is None and not config.test.use_gt_boxes:
        detections = config.test.detection_file
        if detections is None:
            raise ConfigError("test.use_gt_boxes is false but test.detection_file is not set")
    annotations = read_split(config, split or config.data.val_split, detections, files)
    return TopDownDataset(annotations, codec_of(config), augment=None)
