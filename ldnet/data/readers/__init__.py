"""Dataset readers: annotation files -> one ``PersonRecord`` per top-down sample.

One module per format: ``coco`` (COCO 2017 and CrowdPose json, image-info files of a test
split), ``detections`` (COCO detection results, the test-time boxes), ``mpii`` (HRNet's MPII
json). ``records`` holds what they all return and how they report problems; ``jsonfiles``
the reading and value checks they share. Which reader a dataset uses is in the one dataset
table, ``ldnet.datasets``.

Fatal problems (the annotation file cannot be read, is not JSON, or is not the expected
schema) raise ``DataError`` naming the file and the reason. Per-sample problems (missing
image, box of zero area, joint outside the image, detection for an unknown image, malformed
entry) are recorded as ``Problem``s and the sample is skipped (or the joint ignored), unless
``strict=True``, which makes the first one raise ``DataError``. The crop geometry is in
``ldnet.data.transforms``.
"""

from __future__ import annotations

from .coco import read_coco, read_crowdpose
from .detections import read_detections
from .jsonfiles import load_json
from .mpii import read_mpii
from .records import DataError, PersonRecord, PoseAnnotations, Problem, records_with_keypoints

__all__ = [
    "DataError",
    "PersonRecord",
    "PoseAnnotations",
    "Problem",
    "load_json",
    "read_coco",
    "read_crowdpose",
    "read_detections",
    "read_mpii",
    "records_with_keypoints",
]
