"""What every reader returns: one ``PersonRecord`` per top-down sample, and the problems.

Fatal problems raise ``DataError`` naming the file and the reason. Per-sample problems go to a
``ProblemLog``: recorded as ``Problem``s (the sample skipped or the joint ignored), or, with
``strict=True``, raised as ``DataError`` at the first one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldnet.data.keypoints import KeypointSet
from ldnet.errors import LDNetError


class DataError(LDNetError):
    """A fatal data problem; the message names the file and the reason."""


@dataclass
class Problem:
    """One skipped item (or ignored joint) and why."""

    item: str
    reason: str
    action: str = "skipped"

    def as_dict(self) -> dict:
        return {"item": self.item, "reason": self.reason, "action": self.action}


@dataclass
class PersonRecord:
    """One person to crop: where the image is, the box as centre/scale, the ground truth."""

    image_path: Path
    image_id: int
    person_id: int  # annotation id (COCO, CrowdPose), entry index (MPII), detection index
    center: np.ndarray  # (2,) float32, image px
    scale: np.ndarray  # (2,) float32, box size / 200, padding included
    box_xywh: np.ndarray  # (4,) float32, the box the centre/scale came from
    joints: np.ndarray  # (K, 2) float32, image px, 0-based
    visible: np.ndarray  # (K,) float32, 1 labelled, 0 not
    score: float = 1.0  # detection score (1 for ground-truth boxes)
    area: float = 0.0  # COCO area (for OKS), or box area when the file has none

    @property
    def has_keypoints(self) -> bool:
        return bool(self.visible.any())


@dataclass
class PoseAnnotations:
    """What a reader returns: the records plus what was skipped and a few counts."""

    dataset: str
    keypoint_set: KeypointSet
    annotation_file: Path
    image_dir: Path
    records: list[PersonRecord]
    # False for a test split's file (COCO image info, MPII test json): people and boxes
    # but no keypoints to score against, so the metrics are skipped and only a submission made.
    has_ground_truth: bool = True
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    image_files: dict[int, Path] = field(default_factory=dict)  # every image of the file
    crowd_index: dict[int, float] = field(default_factory=dict)  # CrowdPose only

    def __len__(self) -> int:
        return len(self.records)


def records_with_keypoints(records: Iterable[PersonRecord]) -> list[PersonRecord]:
    return [r for r in records if r.has_keypoints]


class ProblemLog:
    """The per-sample problems of one file: kept, or raised at once when ``strict``."""

    def __init__(self, source: Path, strict: bool):
        self.source, self.strict = source, strict
        self.problems: list[Problem] = []

    def add(self, item: str, reason: str, action: str = "skipped") -> None:
        if self.strict:
            raise DataError(f"{self.source}: {item}: {reason}")
        self.problems.append(Problem(item, reason, action))


def drop_joints_outside(
    joints: np.ndarray,
    visible: np.ndarray,
    size: tuple[int, int] | None,
    item: str,
    log: ProblemLog,
) -> None:
    """Labelled joints outside the image are annotation errors: ignore them (weight 0)."""
    if size is None:
        return
    width, height = size
    outside = (visible > 0) & (
        (joints[:, 0] < 0) | (joints[:, 1] < 0) | (joints[:, 0] > width) | (joints[:, 1] > height)
    )
    for j in np.flatnonzero(outside):
        log.add(
            item,
            f"joint {j} at ({joints[j, 0]:.1f}, {joints[j, 1]:.1f}) outside the "
            f"{width}x{height} image",
            action="joint ignored",
        )
    visible[outside] = 0.0
