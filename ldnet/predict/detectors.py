"""Person detectors for when the caller has no boxes: a user-supplied ONNX detector, or
OpenCV's HOG people detector (built into OpenCV 4, nothing to download; OpenCV 5 dropped it,
see ``hog_available``).

Both are called on a BGR image and return boxes (N, 4) as x, y, w, h in image pixels, and
scores (N,) in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import PredictInputError


class DetectorError(PredictInputError):
    """A detector that cannot be loaded or whose outputs are not of a documented form."""


def _nms(boxes_xywh: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    if len(boxes_xywh) == 0:
        return np.zeros(0, int)
    keep = cv2.dnn.NMSBoxes(
        boxes_xywh.astype(np.float32).tolist(),
        scores.astype(np.float32).tolist(),
        0.0,
        iou_threshold,
    )
    return np.asarray(keep, dtype=int).reshape(-1)


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

    def __init__(self, max_side_px: int = 640, nms_iou: float = 0.45):
        if not hog_available():
            raise DetectorError(
                f"OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 dropped it); "
                "install opencv-python-headless<5, or give --detector-onnx / --detections"
            )
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.max_side_px = max_side_px
        self.nms_iou = nms_iou

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
        keep = _nms(boxes, scores, self.nms_iou)
        return boxes[keep], scores[keep]


class OnnxPersonDetector:
    """A user's ONNX detector, e.g. a YOLO export. What the file must look like:

    * input: the first input, float32 (1, 3, H, W), RGB scaled to [0, 1]. The image is
      letterboxed into H x W (resized keeping its aspect ratio, centred, padded with grey
      114), as Ultralytics YOLO models expect. A dynamic H or W is taken as 640.
    * output: the first output, in one of two forms:

      - (1, N, 6) or (N, 6): ``x1, y1, x2, y2, score, class`` in input pixels, after NMS
        (Ultralytics ``export(format="onnx", nms=True)``, most end-to-end detectors);
      - (1, 4 + C, A): the raw YOLOv8 / YOLO11 head, ``cx, cy, w, h`` then C class scores
        for each of A anchors (Ultralytics' default export); NMS is done here.

    People are class ``person_class`` (0 in COCO's 80 classes). Anything else is refused
    with the shape found, when the detector is loaded (a probe on a blank image).
    """

    def __init__(
        self,
        path: str | Path,
        score_threshold: float = 0.3,
        nms_iou: float = 0.45,
        person_class: int = 0,
        threads: int | None = None,
    ):
        from ldnet.inference.backends import onnx_session

        self.path = Path(path)
        if not self.path.is_file():
            raise DetectorError(f"{self.path}: no such ONNX detector file")
        try:
            self.session = onnx_session(self.path, threads)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            reason = str(error).strip().splitlines()[0][:200]
            raise DetectorError(f"{self.path}: not a loadable ONNX model ({reason})") from None
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.person_class = person_class
        first = self.session.get_inputs()[0]
        shape = list(first.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise DetectorError(
                f"{self.path}: input {first.name!r} has shape {shape}; expected (1, 3, H, W)"
            )
        self.input_name = first.name
        self.input_hw = tuple(d if isinstance(d, int) and d > 0 else 640 for d in shape[2:])
        self(np.zeros((self.input_hw[0], self.input_hw[1], 3), np.uint8))  # probe the output

    def _letterbox(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        height, width = self.input_hw
        ratio = min(height / image_bgr.shape[0], width / image_bgr.shape[1])
        new_w, new_h = round(image_bgr.shape[1] * ratio), round(image_bgr.shape[0] * ratio)
        pad_x, pad_y = (width - new_w) / 2, (height - new_h) / 2
        canvas = np.full((height, width, 3), 114, np.uint8)
        left, top = int(round(pad_x - 0.1)), int(round(pad_y - 0.1))
        resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas[top : top + new_h, left : left + new_w] = resized
        tensor = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return np.ascontiguousarray(tensor), ratio, left, top

    def _person_rows(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x1, y1, x2, y2) rows and scores of people, in network-input pixels."""
        shape = output.shape
        if output.ndim == 3 and shape[0] == 1 and 5 <= shape[1] < shape[2]:
            rows = output[0].T  # (A, 4 + C), raw YOLOv8 head
            if rows.shape[1] <= 4 + self.person_class:
                raise DetectorError(
                    f"{self.path}: output of shape {shape} has no class {self.person_class}"
                )
            scores = rows[:, 4 + self.person_class]
            cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
            corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            keep = scores >= self.score_threshold
            corners, scores = corners[keep], scores[keep]
            xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
            chosen = _nms(xywh, scores, self.nms_iou)
            return corners[chosen], scores[chosen]
        if (output.ndim == 3 and shape[0] == 1 and shape[2] == 6) or (
            output.ndim == 2 and shape[1] == 6
        ):
            rows = output.reshape(-1, 6)
            keep = (rows[:, 5].round() == self.person_class) & (rows[:, 4] >= self.score_threshold)
            return rows[keep, :4], rows[keep, 4]
        raise DetectorError(
            f"{self.path}: unexpected detector output of shape {list(shape)}; expected "
            "(1, N, 6) x1,y1,x2,y2,score,class after NMS, or (1, 4+C, A) raw YOLOv8 boxes"
        )

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tensor, ratio, left, top = self._letterbox(image_bgr)
        try:
            outputs = self.session.run(None, {self.input_name: tensor})
        except Exception as error:
            reason = str(error).strip().splitlines()[0][:200]
            raise DetectorError(f"{self.path}: the detector failed to run ({reason})") from None
        corners, scores = self._person_rows(np.asarray(outputs[0], dtype=np.float64))
        corners = (corners - [left, top, left, top]) / ratio
        boxes = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        return boxes.reshape(-1, 4), np.asarray(scores, dtype=np.float64).reshape(-1)
