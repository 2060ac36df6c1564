"""`ldnet test`: predict a split with a checkpoint, write predictions and metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ldnet.config import ExperimentConfig
from ldnet.models import build_model

from .checkpoint import check_compatible, load_checkpoint, load_weights_strict
from .data import codec_of, test_dataset
from .inference import evaluate_predictions, predict_dataset
from .runs import write_json_atomic


def load_model_for_test(config: ExperimentConfig, weights: Path, num_joints: int, device):
    state = load_checkpoint(weights)
    check_compatible(state, config.model.name, num_joints, str(weights))
    model = load_weights_strict(
        build_model(config.model.name, num_joints), state, str(weights), config.model.name
    )
    model.to(device).eval()
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


def score_dataset(config: ExperimentConfig, model, dataset, device, progress: bool = True):
    """Predict every person of ``dataset`` (flip test, decoding) and score the result:
    (metrics, predictions to write). Shared by validation during training and `ldnet test`."""
    predictions = predict_dataset(
        model,
        dataset,
        codec_of(config),
        flip=config.test.flip,
        batch_size=config.test.batch_size,
        device=device,
        workers=min(config.data.workers, 2),
        progress=progress,
    )
    return evaluate_predictions(
        predictions,
        config.data.dataset,
        dataset.keypoint_set,
        dataset.annotations.annotation_file,
        in_vis_threshold=config.test.in_vis_threshold,
        oks_nms_threshold=config.test.oks_nms_threshold,
        mpii_gt_file=Path(config.data.root) / "annot" / "gt_valid.mat",
    )


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
    """Test ``weights`` on ``split`` (or on ``files``: annotation file, image folder)."""
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = test_dataset(config, split, detections, files)
    if detections and len(dataset) == 0:
        # Not an error: a detector may find nobody. The result is a valid, empty file.
        print(
            f"warning: {detections}: no detection boxes for these images; writing an empty result",
            file=sys.stderr,
        )
    model = load_model_for_test(config, weights, dataset.keypoint_set.num_joints, target)
    metrics, output = score_dataset(config, model, dataset, target, progress)
    from ldnet import evaluation

    run_dir.mkdir(parents=True, exist_ok=True)
    if config.data.dataset == "mpii":
        evaluation.write_mpii_pred_mat(run_dir / "pred.mat", output[..., :2])
    else:
        evaluation.write_coco_results(run_dir / "results.json", output)
    if metrics:
        write_json_atomic(run_dir / "metrics.json", evaluation.metrics_to_json(metrics))
    return metrics
