"""The one test-time path: crops -> network (+ flip test) -> codec.decode -> image pixels.

``ldnet test``, validation inside ``ldnet train`` and ``PoseEstimator`` (``ldnet predict``)
all run people through ``TopDownPredictor``; only where the crops come from differs (a
dataset's records through a DataLoader, or the boxes of one image). The codec comes from the
weights' record, so every caller decodes a model as it was trained, in the coordinate
convention it was trained in (``"ldnet"``, or ``"hrnet"`` for imported HRNet/MMPose weights:
crops centred at (W / 2, H / 2), flipped heatmap shifted one pixel, heatmap pixel u at 4u).
The crops must be cut in the same convention (``TopDownDataset`` and ``prepare_crops`` take it
from the codec and the record).
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from ldnet.data.codecs import flip_back
from ldnet.data.dataset import TopDownDataset, before_forking_workers, worker_init_fn
from ldnet.data.transforms import input_to_image
from ldnet.models.record import ModelRecord

from .people import PersonPrediction


class TopDownPredictor:
    """Keypoints of normalised person crops, in image pixels.

    ``backend`` maps float32 crops (N, 3, H, W) to heatmaps (N, K, h, w) as numpy arrays
    (``TorchBackend``, ``OnnxRuntimeBackend``). With ``flip``, each chunk of ``batch_size``
    people runs in one call together with its mirrored crops, and the two heatmaps are
    averaged after mirroring back and swapping left and right.
    """

    def __init__(self, backend, record: ModelRecord, *, flip: bool = True, batch_size: int = 16):
        self.backend, self.record = backend, record
        self.codec = record.build_codec()  # carries the record's convention
        self.flip_permutation = record.keypoint_set.flip_permutation() if flip else None
        self.batch_size = batch_size

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops), self.batch_size):
            chunk = np.asarray(crops[start : start + self.batch_size], dtype=np.float32)
            if self.flip_permutation is None:
                outputs.append(self.backend(chunk))
                continue
            both = self.backend(np.concatenate([chunk, chunk[..., ::-1]]))
            plain, mirrored = both[: len(chunk)], both[len(chunk) :]
            # The "ldnet" convention is flip-exact (shift 0); "hrnet" crops are one input pixel
            # off under a flip, which HRNet's flip test answers with a one-pixel heatmap shift.
            restored = flip_back(mirrored, self.flip_permutation, self.codec.flip_shift_px)
            outputs.append(0.5 * (plain + restored))
        return np.concatenate(outputs)

    def keypoints(self, crops: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Crops (N, 3, H, W) of the people at ``centers``/``scales`` (N, 2) -> keypoints
        (N, K, 3): x, y in 0-based image pixels, confidence."""
        points, confidences = self.codec.decode(self.heatmaps(crops))
        image_points = input_to_image(
            points, centers, scales, 0.0, self.codec.input_size, self.codec.convention
        )
        return np.concatenate([image_points, confidences[..., None]], axis=-1).astype(np.float64)


def predict_dataset(
    predictor: TopDownPredictor,
    dataset: TopDownDataset,
    *,
    workers: int = 0,
    progress: bool = True,
) -> list[PersonPrediction]:
    """Every person record of a (non-augmented) dataset, in the dataset's order."""
    if dataset.augment is not None:
        raise ValueError("predict_dataset needs a test-mode dataset (augment=None)")
    if workers > 0:
        before_forking_workers()
    loader = DataLoader(
        dataset,
        batch_size=predictor.batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=worker_init_fn,
    )
    predictions = []
    for crops, _, _, meta in tqdm(loader, desc="test", disable=not progress, leave=False):
        centers, scales = meta["center"].numpy(), meta["scale"].numpy()
        keypoints = predictor.keypoints(crops.numpy(), centers, scales)
        for n in range(len(keypoints)):
            predictions.append(
                PersonPrediction(
                    image_id=int(meta["image_id"][n]),
                    keypoints=keypoints[n],
                    box_score=float(meta["bbox_score"][n]),
                    center=centers[n],
                    scale=scales[n],
                )
            )
    return predictions
