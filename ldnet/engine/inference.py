"""Test-time path: crops -> model (+ flip) -> codec.decode -> image coordinates -> metrics.

Person-level post-processing follows the HRNet lineage: each person's score is its box
score times the mean confidence of its joints above ``in_vis_threshold``, and duplicate
detections of one person are removed by OKS-NMS per image.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ldnet.data.codecs import MSRAHeatmap, flip_back
from ldnet.data.dataset import TopDownDataset, before_forking_workers, worker_init_fn
from ldnet.data.keypoints import KeypointSet
from ldnet.data.transforms import input_to_image


@dataclass
class PersonPrediction:
    image_id: int
    keypoints: np.ndarray  # (K, 3): x, y in image px (0-based), confidence
    box_score: float
    area: float
    center: np.ndarray
    scale: np.ndarray
    score: float = 0.0  # after rescoring


@torch.no_grad()
def predict_heatmaps(
    model: torch.nn.Module,
    images: torch.Tensor,
    flip_permutation: np.ndarray | None,
) -> torch.Tensor:
    """Final heatmaps of a batch; with ``flip_permutation`` also of the mirrored batch,
    mapped back (mirror + left/right swap) and averaged."""
    heatmaps = model(images).float()
    if flip_permutation is not None:
        flipped = model(images.flip(-1)).float()
        # The crop convention of ldnet.data is flip-exact: no one-pixel shift is needed.
        heatmaps = 0.5 * (heatmaps + flip_back(flipped, flip_permutation))
    return heatmaps


def decode_to_image(
    heatmaps: np.ndarray,
    codec: MSRAHeatmap,
    centers: np.ndarray,
    scales: np.ndarray,
) -> np.ndarray:
    """Heatmaps (N, K, h, w) -> keypoints (N, K, 3) in image pixels with confidences."""
    points, scores = codec.decode(heatmaps)
    image_points = input_to_image(points, centers, scales, 0.0, codec.input_size)
    return np.concatenate([image_points, scores[..., None]], axis=-1).astype(np.float64)


def predict_dataset(
    model: torch.nn.Module,
    dataset: TopDownDataset,
    codec: MSRAHeatmap,
    *,
    flip: bool,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
    progress: bool = True,
) -> list[PersonPrediction]:
    """Predict every person record of a (non-augmented) dataset."""
    if workers > 0:
        before_forking_workers()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=worker_init_fn,
        persistent_workers=False,
    )
    permutation = dataset.keypoint_set.flip_permutation() if flip else None
    model.eval()
    predictions = []
    for images, _, _, meta in tqdm(loader, desc="test", disable=not progress, leave=False):
        images = images.to(device, non_blocking=True)
        if device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        heatmaps = predict_heatmaps(model, images, permutation).cpu().numpy()
        centers, scales = meta["center"].numpy(), meta["scale"].numpy()
        keypoints = decode_to_image(heatmaps, codec, centers, scales)
        for n in range(len(keypoints)):
            predictions.append(
                PersonPrediction(
                    image_id=int(meta["image_id"][n]),
                    keypoints=keypoints[n],
                    box_score=float(meta["bbox_score"][n]),
                    area=float(meta["area"][n]),
                    center=centers[n],
                    scale=scales[n],
                )
            )
    return predictions


def joint_scores(keypoints: np.ndarray, in_vis_threshold: float) -> np.ndarray:
    """(N, K, 3) -> (N,): mean confidence of each person's joints above the threshold
    (0 for a person with none)."""
    confidences = keypoints[..., 2]
    confident = confidences > in_vis_threshold
    count = confident.sum(axis=-1)
    total = (confidences * confident).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def rescore(predictions: list[PersonPrediction], in_vis_threshold: float) -> None:
    """score = box score x mean confidence of the joints above ``in_vis_threshold``."""
    if not predictions:
        return
    scores = joint_scores(np.stack([p.keypoints for p in predictions]), in_vis_threshold)
    for person, joint_score in zip(predictions, scores, strict=True):
        person.score = float(joint_score) * person.box_score


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """OKS between every pair of predictions of one image: (N, K, 3) -> (N, N).

    Uses the first person's area as the scale, like the OKS of COCO's evaluator with the
    kept prediction as ground truth.
    """
    variances = (2 * np.asarray(sigmas)) ** 2
    delta = keypoints[:, None, :, :2] - keypoints[None, :, :, :2]
    squared = (delta**2).sum(-1)  # (N, N, K)
    scale = (areas[:, None, None] + np.spacing(1)) * 2 * variances[None, None, :]
    return np.exp(-squared / scale).mean(-1)


def oks_nms_indices(
    keypoints: np.ndarray, areas: np.ndarray, scores: np.ndarray, sigmas, threshold: float
) -> list[int]:
    """Greedy OKS-NMS over the people of one image: indices kept, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlap = oks_matrix(keypoints[order], np.asarray(areas)[order], sigmas)
    suppressed = np.zeros(len(order), bool)
    kept = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(int(order[i]))
        suppressed |= overlap[i] > threshold
    return kept


def oks_nms(
    predictions: list[PersonPrediction], sigmas: np.ndarray, threshold: float
) -> list[PersonPrediction]:
    """Greedy NMS per image by OKS: keep the best-scored person, drop those overlapping it."""
    by_image: dict[int, list[PersonPrediction]] = defaultdict(list)
    for person in predictions:
        by_image[person.image_id].append(person)
    kept = []
    for people in by_image.values():
        keypoints = np.stack([p.keypoints for p in people])
        areas = np.array([p.area for p in people])
        scores = np.array([p.score for p in people])
        kept += [people[i] for i in oks_nms_indices(keypoints, areas, scores, sigmas, threshold)]
    return kept


def to_coco_results(predictions: list[PersonPrediction]) -> list[dict]:
    return [
        {
            "image_id": p.image_id,
            "category_id": 1,
            "keypoints": [round(float(v), 3) for v in p.keypoints.reshape(-1)],
            "score": float(p.score),
        }
        for p in predictions
    ]


def evaluate_predictions(
    predictions: list[PersonPrediction],
    dataset_name: str,
    keypoint_set: KeypointSet,
    annotation_file: Path,
    *,
    in_vis_threshold: float,
    oks_nms_threshold: float,
    mpii_gt_file: Path | None = None,
) -> tuple[dict[str, float], object]:
    """Metrics of the predictions, and what to write as the predictions file (COCO results
    list, or the MPII (N, 16, 3) array)."""
    from ldnet import evaluation

    if dataset_name == "mpii":
        preds = (
            np.stack([p.keypoints for p in predictions]) if predictions else np.zeros((0, 16, 3))
        )
        if mpii_gt_file is None or not Path(mpii_gt_file).exists():
            return {}, preds
        return dict(evaluation.evaluate_mpii(preds, mpii_gt_file)), preds
    rescore(predictions, in_vis_threshold)
    kept = oks_nms(predictions, np.asarray(keypoint_set.sigmas), oks_nms_threshold)
    results = to_coco_results(kept)
    if dataset_name == "crowdpose":
        metrics = evaluation.evaluate_crowdpose(results, annotation_file)
    else:
        metrics = evaluation.evaluate_coco(results, annotation_file)
    return dict(metrics), results
