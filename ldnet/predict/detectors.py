"""OpenCV's HOG people detector: the detector that needs nothing downloaded (built into
OpenCV 4; OpenCV 5 dropped it, see ``hog_available``), so the offline fallback when no
ONNX detector (``ldnet.predict.onnx_detector``) is at hand.

Called on a BGR image; returns boxes (N, 4) as x, y, w, h in image pixels, and scores (N,)
in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np

from .detector_boxes import nms_xyxy, xyxy_to_xywh
from .errors import DetectorError
from .onnx_detector import OnnxPersonDetector

__all__ = ["DetectorError", "HogPersonDetector", "OnnxPersonDetector", "hog_available"]


def hog_available() -> bool:
    """OpenCV 4.x ships the HOG people detector; OpenCV 5 moved it out of the main modules."""
    return hasattr(cv2, "HOGDescriptor")


class HogPersonDetector:
    """Dalal-Triggs HOG + linear SVM (``cv2.HOGDescriptor_getDefaultPeopleDetector``).

    Finds upright, mostly unoccluded people at least about 100 px tall at the working
    resolution; misses sitting, lying and partly hidden people. The image is shrunk so its
    longer side is at most ``max_side_px`` (speed). Scores are the SVM margin m mapped to
    m / (1 + m).
    """

    name = "OpenCV HOG"

    def __init__(self, max_side_px: int = 640, nms_iou: float = 0.45):
        if not hog_available():
            raise DetectorError(
                f"OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 dropped it); "
                "install opencv-python-headless<5, or give --detector / --detections"
            )
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.max_side_px = max_side_px
        self.nms_iou = nms_iou

    def describe(self) -> str:
        return f"OpenCV HOG people detector (2005; upright people only), NMS IoU {self.nms_iou:g}"

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zoom = min(1.0, self.max_side_px / max(image_bgr.shape[:2]))
        small = image_bgr
        if zoom < 1.0:
            small = cv2.resize(image_bgr, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < 128:  # smaller than the detection window
            return np.zeros((0, 4)), np.zeros(0)
        rects, weights = self.hog.detectMultiScale(
            small, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        boxes = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / zoom
        margins = np.clip(np.asarray(weights, dtype=np.float64).reshape(-1), 0, None)
        scores = margins / (1.0 + margins)
        corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        keep = nms_xyxy(corners, scores, self.nms_iou)
        return xyxy_to_xywh(corners[keep]), scores[keep]
