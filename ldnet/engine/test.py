"""`ldnet test`: predict a split with a checkpoint, write the submission file and metrics.

The weights' record (network, joint set, input size, codec) decides how people are cropped
and decoded; the config says where the data is and how people are post-processed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from ldnet.config import ExperimentConfig
from ldnet.evaluation import EvaluationInputError, metrics_to_json
from ldnet.inference import (
    ModelRecord,
    OnnxRuntimeBackend,
    TopDownPredictor,
    TorchBackend,
    load_model,
    people_results,
    predict_dataset,
    record_from_onnx,
)

from .data import ground_truth_file, record_of, test_dataset
from .runs import write_json_atomic


def predictor_for(config: ExperimentConfig, model, record: ModelRecord, device) -> TopDownPredictor:
    """The test-time path over a PyTorch model (BatchNorm folded into a copy, eval mode)."""
    return TopDownPredictor(
        TorchBackend(model, str(device)),
        record,
        flip=config.test.flip,
        batch_size=config.test.batch_size,
    )


def score_dataset(config: ExperimentConfig, predictor: TopDownPredictor, dataset, progress=True):
    """Predict every person of ``dataset`` and score the result: (metrics, submission).

    COCO-style benchmarks: rescoring, OKS-NMS, COCO results rows; MPII: one (16, 3) row per
    given person. Metrics are empty when the split has no ground truth (COCO test-dev, the
    MPII test set). Shared by validation during training and `ldnet test`."""
    kind = config.data.kind
    predictions = predict_dataset(
        predictor, dataset, workers=min(config.data.workers, 2), progress=progress
    )
    if kind.scores_people:
        sigmas = np.asarray(kind.keypoint_set.sigmas)
        test = config.test
        output = people_results(predictions, sigmas, test.in_vis_threshold, test.oks_nms_threshold)
    else:
        output = (
            np.stack([p.keypoints for p in predictions])
            if predictions
            else np.zeros((0, kind.num_joints, 3))
        )
    if not dataset.annotations.has_ground_truth:
        return {}, output
    return dict(kind.evaluate(output, ground_truth_file(config, dataset))), output


def test(
    config: ExperimentConfig,
    weights: Path,
    run_dir: Path,
    split: str | None = None,
    detections: str | None = None,
    device: str | None = None,
    progress: bool = True,
    files: tuple[Path, Path] | None = None,
) -> dict[str, float]:
    """Test ``weights`` on ``split`` (or on ``files``: annotation file, image folder).

    Writes the submission file (``results.json`` or ``pred.mat``) and, when the split has
    ground truth, ``metrics.json``; returns the metrics ({} without ground truth)."""
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if Path(weights).suffix.lower() == ".onnx":  # `ldnet export onnx` (float or --int8)
        record = record_from_onnx(weights, config.data.dataset)
        backend = OnnxRuntimeBackend(weights)
        predictor = TopDownPredictor(
            backend, record, flip=config.test.flip, batch_size=config.test.batch_size
        )
    else:
        # An official HRNet / MMPose file is imported as it loads, as the config describes it.
        model, record = load_model(
            weights,
            config.data.dataset,
            model=config.model.name,
            input_size=tuple(config.data.input_size),
            decoder=config.test.decoder,
        )
        predictor = predictor_for(config, model, record, target)
    _note_record_differences(config, record, weights)
    dataset = test_dataset(config, record, split, detections, files)
    if detections and len(dataset) == 0:
        # Not an error: a detector may find nobody. The result is a valid, empty file.
        print(
            f"warning: {detections}: no detection boxes for these images; writing an empty result",
            file=sys.stderr,
        )
    kind = config.data.kind
    if dataset.annotations.has_ground_truth:
        truth = ground_truth_file(config, dataset)
        if not truth.is_file():  # before the predictions, not after
            raise EvaluationInputError(f"{truth}: {kind.name} ground truth file not found")
    metrics, output = score_dataset(config, predictor, dataset, progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    kind.write_predictions(run_dir / kind.prediction_file, output)
    if dataset.annotations.has_ground_truth:
        write_json_atomic(run_dir / "metrics.json", metrics_to_json(metrics))
    else:
        print(
            f"note: {dataset.annotations.annotation_file} holds no ground truth (a test set): "
            f"wrote the submission file {run_dir / kind.prediction_file}, metrics skipped",
            file=sys.stderr,
        )
    return metrics


def _note_record_differences(config: ExperimentConfig, record: ModelRecord, source) -> None:
    """The weights' record wins over the config; say so where they differ."""
    wanted = record_of(config)
    differences = [
        f"{name} {theirs} (config: {ours})"
        for name, theirs, ours in (
            ("input size", record.input_size, wanted.input_size),
            ("codec", record.codec, wanted.codec),
            ("sigma", record.sigma, wanted.sigma),
            ("convention", record.convention, wanted.convention),
        )
        if theirs != ours
    ]
    if differences:
        print(f"note: {source}: using the weights' {', '.join(differences)}", file=sys.stderr)
