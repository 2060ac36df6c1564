"""Keypoint metadata of the three benchmarks, in one place.

Joint orders are the ones the annotation files use (COCO and CrowdPose: the ``keypoints``
list of the json's person category; MPII: the HRNet/seed json, which is the order of the
official MPII ``joint_id``). Facts checked against open-mmlab/mmpose
``configs/_base_/datasets/{coco,mpii,crowdpose}.py`` and the HRNet reference code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KeypointSet:
    """Names, left/right pairs, drawing skeleton, body halves and OKS sigmas of one dataset."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]  # 0-based joint index pairs, for drawing
    upper_body: tuple[int, ...]  # half-body augmentation picks one of these two sets
    lower_body: tuple[int, ...]
    sigmas: tuple[float, ...]  # per-joint OKS sigma (the `kappa` of the COCO OKS formula)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if len(self.sigmas) != n:
            raise ValueError(f"{self.name}: {len(self.sigmas)} sigmas for {n} joints")
        used = [j for pair in self.flip_pairs + self.skeleton for j in pair]
        used += list(self.upper_body) + list(self.lower_body)
        if any(not 0 <= j < n for j in used):
            raise ValueError(f"{self.name}: joint index out of range 0..{n - 1}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def flip_permutation(self) -> np.ndarray:
        """Index array ``perm`` with ``flipped[j] = original[perm[j]]`` (left <-> right)."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def joint_index(self, joint_name: str) -> int:
        return self.joint_names.index(joint_name)


COCO = KeypointSet(
    name="coco",
    joint_names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # The json's 1-based skeleton, made 0-based.
    skeleton=(
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 12),
        (5, 11),
        (6, 12),
        (5, 6),
        (5, 7),
        (6, 8),
        (7, 9),
        (8, 10),
        (1, 2),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (4, 6),
    ),
    upper_body=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
    lower_body=(11, 12, 13, 14, 15, 16),
    # The official COCO keypoint sigmas (cocoapi, COCOeval.Params.kpt_oks_sigmas).
    sigmas=(
        0.026,
        0.025,
        0.025,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ),
)

MPII = KeypointSet(
    name="mpii",
    joint_names=(
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (8, 12),
        (12, 11),
        (11, 10),
        (8, 13),
        (13, 14),
        (14, 15),
    ),
    # HRNet's MPII split: thorax and up is upper body, pelvis and down is lower body.
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15),
    lower_body=(0, 1, 2, 3, 4, 5, 6),
    # MPII has no official OKS sigmas (its metric is PCKh). These are MMPose's, "adapted from
    # COCO"; used only for OKS-NMS and for round-trip OKS checks on MPII, never for PCKh.
    sigmas=(
        0.089,
        0.083,
        0.107,
        0.107,
        0.083,
        0.089,
        0.026,
        0.026,
        0.026,
        0.026,
        0.062,
        0.072,
        0.179,
        0.179,
        0.072,
        0.062,
    ),
)

CROWDPOSE = KeypointSet(
    name="crowdpose",
    joint_names=(
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "head",  # "top_head" in MMPose; the json calls it "head"
        "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (10, 8),
        (8, 6),
        (11, 9),
        (9, 7),
        (6, 7),
        (0, 6),
        (1, 7),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (12, 13),
        (1, 13),
        (0, 13),
    ),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body=(6, 7, 8, 9, 10, 11),
    # The official CrowdPose sigmas (crowdposetools): COCO's body sigmas, head and neck 0.079.
    sigmas=(
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
        0.079,
        0.079,
    ),
)

KEYPOINT_SETS: dict[str, KeypointSet] = {s.name: s for s in (COCO, MPII, CROWDPOSE)}
