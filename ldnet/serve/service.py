"""The pose service behind the HTTP layer: image + boxes -> people, with the network calls
of several requests run together.

The work of one request is split where it runs best: decoding, person detection and the
affine crops run in the request's own thread (``prepare``); the network, flip test and
decode of all waiting requests run as one batch on the batcher's worker (``run_batch``);
scores and the JSON form are per request again. The numbers are those of
``PoseEstimator(image, boxes)``: the same crops, the same ``TopDownPredictor``, the same
rescoring and, for detected people, the same OKS-NMS as ``ldnet predict``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ldnet.data.dataset import prepare_crops
from ldnet.inference import TopDownPredictor, box_areas_px, joint_scores
from ldnet.predict.boxes import box_problem
from ldnet.predict.estimator import PoseEstimator, Poses, oks_suppress

# image (H, W, 3) BGR -> (boxes (N, 4) x, y, w, h, scores (N,)); None: the whole image.
PersonFinder = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]


@dataclass
class PoseJob:
    """One request's people, ready for the network."""

    crops: np.ndarray  # (N, 3, H, W) float32
    centers: np.ndarray  # (N, 2)
    scales: np.ndarray  # (N, 2)
    boxes: np.ndarray  # (N, 4)
    box_scores: np.ndarray  # (N,)
    flip: bool
    detected: bool  # boxes found by the server (OKS-NMS applies), not given by the caller


class PoseService:
    """``PoseEstimator``'s test path, split into per-request and per-batch halves."""

    def __init__(
        self,
        estimator: PoseEstimator,
        find_people: PersonFinder,
        *,
        name: str | None = None,
        oks_nms_threshold: float = 0.9,
        people_per_call: int = 32,
    ):
        self.estimator = estimator
        self.find_people = find_people
        self.name = name or estimator.record.model
        self.oks_nms_threshold = oks_nms_threshold
        record, backend = estimator.record, estimator.backend
        # Both flip settings share the one backend (the network is loaded once).
        self.predictors = {
            flip: TopDownPredictor(backend, record, flip=flip, batch_size=people_per_call)
            for flip in (False, True)
        }
        # OpenCV's HOG descriptor and user ONNX sessions are not documented thread-safe.
        self._finder_lock = threading.Lock()

    @property
    def keypoint_set(self):
        return self.estimator.keypoint_set

    def describe(self) -> dict:
        """``GET /v1/model``."""
        joints = self.keypoint_set
        return {
            "name": self.name,
            "dataset": self.estimator.record.dataset,
            "joints": list(joints.joint_names),
            "skeleton": [list(pair) for pair in joints.skeleton],
            "input_size": list(self.estimator.input_size),
            "backend": self.estimator.backend.name,
        }

    def warm_up(self) -> None:
        for predictor in self.predictors.values():
            height, width = self.estimator.input_size
            predictor.heatmaps(np.zeros((1, 3, height, width), np.float32))

    def prepare(self, image: np.ndarray, boxes: np.ndarray | None, flip: bool) -> PoseJob:
        """Person boxes (given, or found as ``ldnet predict`` finds them) -> crops."""
        detected = boxes is None
        if detected:
            with self._finder_lock:
                found = self.find_people(image)
            if found is None:  # whole image: one person
                height, width = image.shape[:2]
                boxes, scores = np.array([[0.0, 0.0, width, height]]), np.ones(1)
            else:
                boxes, scores = found
                keep = np.array([box_problem(b, image.shape) is None for b in boxes], bool)
                boxes, scores = boxes[keep].reshape(-1, 4), scores[keep]
        else:
            scores = np.ones(len(boxes))
        crops, centers, scales = prepare_crops(image, boxes, self.estimator.input_size)
        return PoseJob(crops, centers, scales, boxes, np.asarray(scores, float), flip, detected)

    def run_batch(self, jobs: Sequence[PoseJob]) -> list[Poses]:
        """The network on the people of every job at once (one call per flip setting)."""
        keypoints: dict[int, np.ndarray] = {}
        for flip in (False, True):
            members = [i for i, job in enumerate(jobs) if job.flip == flip and len(job.crops)]
            if not members:
                continue
            crops = np.concatenate([jobs[i].crops for i in members])
            centers = np.concatenate([jobs[i].centers for i in members])
            scales = np.concatenate([jobs[i].scales for i in members])
            found = self.predictors[flip].keypoints(crops, centers, scales)
            start = 0
            for i in members:
                count = len(jobs[i].crops)
                keypoints[i] = found[start : start + count]
                start += count
        return [self._poses(job, keypoints.get(i)) for i, job in enumerate(jobs)]

    def _poses(self, job: PoseJob, keypoints: np.ndarray | None) -> Poses:
        joints = self.keypoint_set.num_joints
        if keypoints is None:
            keypoints = np.zeros((0, joints, 3))
        scores = joint_scores(keypoints, self.estimator.in_vis_threshold) * job.box_scores
        poses = Poses(keypoints, scores, job.boxes, job.box_scores, box_areas_px(job.scales))
        if job.detected:
            poses = oks_suppress(poses, self.keypoint_set, self.oks_nms_threshold)
        return poses

    def people_json(self, poses: Poses) -> list[dict]:
        """Each person as ``{"box", "score", "keypoints": [{"name", "x", "y", "score"}]}``.
        Four decimals: a ten-thousandth of a pixel, well below any model's error."""
        names = self.keypoint_set.joint_names
        return [
            {
                "box": [round(float(v), 4) for v in poses.boxes[n]],
                "score": round(float(poses.scores[n]), 6),
                "keypoints": [
                    {
                        "name": names[j],
                        "x": round(float(x), 4),
                        "y": round(float(y), 4),
                        "score": round(float(c), 6),
                    }
                    for j, (x, y, c) in enumerate(poses.keypoints[n])
                ],
            }
            for n in range(len(poses))
        ]
