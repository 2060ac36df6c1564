"""Data path: dataset readers, transforms and heatmap codecs (COCO, MPII, CrowdPose)."""

from .keypoints import COCO, CROWDPOSE, KEYPOINT_SETS, MPII, KeypointSet

__all__ = ["COCO", "CROWDPOSE", "KEYPOINT_SETS", "MPII", "KeypointSet"]
