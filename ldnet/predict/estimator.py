"""``PoseEstimator``: image + person boxes -> keypoints, from a checkpoint or an ONNX file.

The top-down test path, one image at a time: boxes -> centre/scale -> affine crops ->
``ldnet.inference.TopDownPredictor`` (network, flip test, decode with the codec recorded in
the weights, map back to image pixels) -> rescoring by joint confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ldnet.data.dataset import prepare_crops
from ldnet.data.images import ImageError, read_image
from ldnet.data.keypoints import KeypointSet
from ldnet.inference import (
    BACKENDS,
    ModelRecord,
    TopDownPredictor,
    box_areas_px,
    joint_scores,
    load_model,
    make_backend,
    oks_nms_indices,
    onnx_file_backend,
    record_from_onnx,
)

from .boxes import box_problem, check_boxes, whole_image_box
from .sources import SourceError

AUTO = "auto"  # PoseEstimator(detector="auto"): the detector `ldnet predict` picks


@dataclass
class Poses:
    """The people found in one image."""

    keypoints: np.ndarray  # (N, K, 3): x, y in 0-based image pixels, confidence
    scores: np.ndarray  # (N,): box score x mean confidence of the confident joints
    boxes: np.ndarray  # (N, 4): x, y, w, h of the person boxes used
    box_scores: np.ndarray  # (N,)
    areas: np.ndarray  # (N,): padded, aspect-fixed box area in px^2 (the OKS-NMS scale)

    def __len__(self) -> int:
        return len(self.keypoints)

    def select(self, index) -> Poses:
        return Poses(
            self.keypoints[index],
            self.scores[index],
            self.boxes[index],
            self.box_scores[index],
            self.areas[index],
        )


def as_bgr_image(image, rgb: bool = False, source: str = "image") -> np.ndarray:
    """A path or an array (H, W), (H, W, 3) or (H, W, 4), uint8 -> uint8 BGR (H, W, 3)."""
    if isinstance(image, (str, Path)):
        try:
            return read_image(image)
        except ImageError as error:
            raise SourceError(f"{image}: {error}") from None
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise SourceError(f"{source}: expected a uint8 image, got {array.dtype}")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise SourceError(f"{source}: expected an (H, W, 3) image, got shape {array.shape}")
    array = array[:, :, :3]
    return np.ascontiguousarray(array[:, :, ::-1] if rgb else array)


class PoseEstimator:
    """Top-down pose estimation of the people in an image.

    >>> estimator = PoseEstimator.from_weights("runs/x/best.pt")  # or an exported .onnx
    >>> poses = estimator("photo.jpg", boxes=[[x, y, w, h]])     # no boxes: whole image
    >>> poses.keypoints  # (N, K, 3) x, y, confidence

    The architecture, joint set, input size and codec come from the weights' record. With a
    ``detector`` (a callable image -> (boxes xywh, scores)), a call without boxes finds the
    people first, keeps those scoring at least ``box_threshold`` and removes duplicate poses
    by OKS-NMS, as ``ldnet predict`` does.
    """

    def __init__(
        self,
        backend,
        record: ModelRecord,
        *,
        flip: bool = True,
        batch_size: int = 16,
        in_vis_threshold: float = 0.2,
        detector=None,
        box_threshold: float = 0.3,
        oks_nms_threshold: float = 0.9,
    ):
        self.backend, self.record = backend, record
        self.predictor = TopDownPredictor(backend, record, flip=flip, batch_size=batch_size)
        self.in_vis_threshold = in_vis_threshold
        self.detector = detector
        self.detector_line = ""  # which detector runs, when from_weights chose it
        self.box_threshold = box_threshold
        self.oks_nms_threshold = oks_nms_threshold

    @classmethod
    def from_weights(
        cls,
        path: str | Path,
        *,
        backend: str = "pytorch",
        dataset: str | None = None,
        threads: int | None = None,
        device: str = "cpu",
        detector: str | Path | None = None,
        nms_iou: float | None = None,
        **options,
    ) -> PoseEstimator:
        """From a training checkpoint (``.pt``, read with ``weights_only=True``), an
        ``ldnet export onnx`` file (``.onnx``, run by ONNX Runtime, or OpenVINO with
        ``backend="openvino"``) or a catalogue name
        (``ldnet weights list``: fetched and cached on first use). ``dataset`` names the
        joint set the caller expects; weights for another one are refused.

        ``detector``: None (no detector: a call without boxes takes the whole image),
        ``"auto"`` (what ``ldnet predict`` picks: a cached or fetched catalogue detector,
        else HOG), ``"hog"``, an ONNX file or a catalogue detector name; ``box_threshold``
        and ``nms_iou`` are its score and NMS thresholds."""
        from ldnet.lineage.download import resolve_weights

        from .detector_choice import choose_detector

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        path = resolve_weights(path)
        if Path(path).suffix.lower() == ".onnx":
            record = record_from_onnx(path, dataset)
            estimator = cls(onnx_file_backend(path, backend, threads), record, **options)
        else:
            model, record = load_model(path, dataset)
            runner = make_backend(model, backend, record.input_size, device=device, threads=threads)
            estimator = cls(runner, record, **options)
        if detector is not None:
            chosen = choose_detector(
                None if str(detector) == AUTO else detector,
                score_threshold=estimator.box_threshold,
                nms_iou=nms_iou,
                threads=threads,
            )
            estimator.detector, estimator.detector_line = chosen.detector, chosen.line
        return estimator

    @property
    def codec(self):
        return self.predictor.codec

    @property
    def keypoint_set(self) -> KeypointSet:
        return self.record.keypoint_set

    @property
    def input_size(self) -> tuple[int, int]:
        return self.record.input_size

    def warm_up(self, people: int = 1) -> None:
        """One call on blank crops: oneDNN and ONNX Runtime set up their kernels on the first
        call of a shape, which would otherwise be counted in the first frame."""
        height, width = self.input_size
        self.predictor.heatmaps(np.zeros((people, 3, height, width), np.float32))

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """Flip-tested heatmaps of normalised crops (N, 3, H, W)."""
        return self.predictor.heatmaps(crops)

    def __call__(self, image, boxes=None, box_scores=None, *, rgb: bool = False) -> Poses:
        """Poses of the people in ``boxes`` (N, 4) x, y, w, h; the whole image if None.

        ``image`` is a path or a uint8 array, BGR (OpenCV) unless ``rgb``. A box with zero
        or negative size or no pixel inside the image stops with a ``BoxError``."""
        image_bgr = as_bgr_image(image, rgb)
        if boxes is None and self.detector is not None:
            return self._detect_then_estimate(image_bgr)
        if boxes is None:
            boxes = whole_image_box(image_bgr.shape)
        boxes = check_boxes(boxes, image_bgr.shape)
        if box_scores is None:
            box_scores = np.ones(len(boxes))
        box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
        if len(box_scores) != len(boxes):
            raise ValueError(f"{len(box_scores)} box scores for {len(boxes)} boxes")
        joints = self.keypoint_set.num_joints
        if len(boxes) == 0:
            return Poses(np.zeros((0, joints, 3)), np.zeros(0), boxes, box_scores, np.zeros(0))
        crops, centers, scales = prepare_crops(
            image_bgr, boxes, self.input_size, self.record.convention
        )
        keypoints = self.predictor.keypoints(crops, centers, scales)
        scores = joint_scores(keypoints, self.in_vis_threshold) * box_scores
        return Poses(keypoints, scores, boxes, box_scores, box_areas_px(scales))

    def _detect_then_estimate(self, image_bgr: np.ndarray) -> Poses:
        boxes, scores = self.detector(image_bgr)
        keep = scores >= self.box_threshold
        keep &= np.array([box_problem(box, image_bgr.shape) is None for box in boxes], bool)
        poses = self(image_bgr, boxes[keep], scores[keep])
        return oks_suppress(poses, self.keypoint_set, self.oks_nms_threshold)


def oks_suppress(poses: Poses, keypoint_set: KeypointSet, threshold: float = 0.9) -> Poses:
    """Drop duplicate detections of one person (OKS-NMS, as ``ldnet test`` does)."""
    if len(poses) < 2:
        return poses
    kept = oks_nms_indices(
        poses.keypoints, poses.areas, poses.scores, np.asarray(keypoint_set.sigmas), threshold
    )
    return poses.select(np.array(kept, dtype=int))
