"""The torch Dataset of top-down samples: record -> crop -> (image, target, weight, meta)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .codecs import MSRAHeatmap
from .images import ImageError, read_image
from .readers import DataError, PoseAnnotations, Problem
from .transforms import (
    AugmentConfig,
    affine_matrix,
    flip_joints,
    normalize,
    random_geometry,
    transform_points,
    warp_crop,
)


class TopDownDataset(Dataset):
    """Top-down samples of a dataset, for training (``augment``) or testing.

    ``__getitem__`` returns ``(image, target, target_weight, meta)``:

    - ``image``: float32 tensor (3, H, W), RGB, ImageNet-normalised;
    - ``target``: float32 tensor (K, h, w), the codec's heatmaps;
    - ``target_weight``: float32 tensor (K,), 0 for unlabelled or out-of-crop joints;
    - ``meta``: dict of fixed-shape numbers (collates with torch's default collate):
      ``image_id``, ``person_id``, ``index``, ``center`` (2,), ``scale`` (2,),
      ``rotation_deg``, ``flipped``, ``bbox_score``, ``area``, ``joints`` (K, 2) image px,
      ``visible`` (K,). To map a prediction back: ``transforms.input_to_image(codec.decode(
      heatmaps)[0], center, scale, rotation_deg, codec.input_size, codec.convention)`` (flip
      is already undone by ``codecs.flip_back`` in the flip test, so ``flipped`` is False at
      test time).

    Crops are cut in the codec's coordinate convention, so a test set for imported HRNet
    weights (convention ``"hrnet"``) is cropped as HRNet crops.

    An unreadable image is recorded in ``problems`` and the next readable sample is returned
    instead; with ``strict=True`` it raises ``DataError``.
    """

    def __init__(
        self,
        annotations: PoseAnnotations,
        codec: MSRAHeatmap,
        *,
        augment: AugmentConfig | None = None,
        seed: int | None = None,
        strict: bool = False,
    ):
        self.annotations = annotations
        self.records = annotations.records
        self.keypoint_set = annotations.keypoint_set
        self.codec = codec
        self.augment = augment
        self.strict = strict
        self.problems: list[Problem] = []
        self._flip_perm = self.keypoint_set.flip_permutation()
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def reseed(self, worker_seed: int) -> None:
        """Give each DataLoader worker its own augmentation stream (see ``worker_init_fn``).

        The stream mixes the worker's seed with the dataset's own: torch draws worker seeds
        from the global generator, which every process of a DDP run seeds alike, so the
        dataset's seed (which depends on the rank) is what keeps the processes' augmentations
        apart."""
        self._rng = np.random.default_rng([worker_seed, self.seed or 0])

    def __getitem__(self, index: int):
        for attempt in range(min(len(self.records), 16)):
            i = (index + attempt) % len(self.records)
            record = self.records[i]
            try:
                image = read_image(record.image_path)
            except ImageError as error:
                item = f"image {record.image_id} ({record.image_path.name})"
                if self.strict:
                    raise DataError(f"{record.image_path}: {error}") from None
                self.problems.append(Problem(item, str(error)))
                continue
            return self.sample(image, i)
        raise DataError(f"{self.annotations.annotation_file}: no readable image near item {index}")

    def sample(self, image_bgr: np.ndarray, index: int):
        """Build the sample of record ``index`` from its already-decoded image."""
        record = self.records[index]
        center, scale, rotation, flip = record.center, record.scale, 0.0, False
        if self.augment is not None:
            center, scale, rotation, flip = random_geometry(
                record.joints,
                record.visible,
                center,
                scale,
                self.keypoint_set,
                self.codec.input_size,
                self.augment,
                self._rng,
            )
        matrix = affine_matrix(
            center,
            scale,
            rotation,
            self.codec.input_size,
            flip=flip,
            convention=self.codec.convention,
        )
        crop = warp_crop(image_bgr, matrix, self.codec.input_size)
        joints = transform_points(record.joints, matrix)
        visible = record.visible
        if flip:
            joints, visible = flip_joints(joints, visible, self._flip_perm)
        target, weight = self.codec.encode(joints, visible)
        meta = {
            "index": index,
            "image_id": record.image_id,
            "person_id": record.person_id,
            "center": np.asarray(center, np.float32),
            "scale": np.asarray(scale, np.float32),
            "rotation_deg": np.float32(rotation),
            "flipped": flip,
            "bbox_score": np.float32(record.score),
            "area": np.float32(record.area),
            "joints": record.joints,
            "visible": record.visible,
        }
        return (
            torch.from_numpy(normalize(crop)),
            torch.from_numpy(target),
            torch.from_numpy(weight),
            meta,
        )


def before_forking_workers() -> None:
    """Call in the parent before a DataLoader forks workers.

    A forked child inherits OpenCV's thread-pool state but not its threads: its first
    parallel OpenCV call (even ``cv2.setNumThreads``) then waits for threads that do not
    exist, and the worker hangs. With one OpenCV thread in the parent there is no pool to
    inherit. The parent's own OpenCV work is small (decoding, drawing); workers do the rest.
    """
    import cv2

    cv2.setNumThreads(1)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader hook: one OpenCV thread per worker and a distinct augmentation seed."""
    import cv2

    cv2.setNumThreads(1)
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, TopDownDataset):
        info.dataset.reseed(int(info.seed % 2**32))  # info.seed: base seed + worker id


def prepare_crops(
    image_bgr: np.ndarray,
    boxes_xywh: np.ndarray,
    input_size: tuple[int, int],
    convention: str = "ldnet",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test-time crops of one image: boxes (N, 4) -> (crops (N, 3, H, W) float32 normalised,
    centers (N, 2), scales (N, 2)), cut in the weights' coordinate ``convention``. Decode with
    ``codec.decode`` and map back with ``transforms.input_to_image(points, centers, scales,
    0.0, input_size, convention)``.
    """
    from .transforms import box_to_center_scale

    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    centers, scales = box_to_center_scale(boxes, input_size)
    crops = np.zeros((len(boxes), 3) + tuple(input_size), np.float32)
    for n in range(len(boxes)):  # one warp per person: the per-person cost is the warp itself
        matrix = affine_matrix(centers[n], scales[n], 0.0, input_size, convention=convention)
        crops[n] = normalize(warp_crop(image_bgr, matrix, input_size))
    return crops, centers, scales
