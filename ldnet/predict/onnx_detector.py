"""An ONNX person detector: OpenMMLab's YOLOX (MMDeploy's SDK export, the catalogue's
detectors) or a user's Ultralytics YOLO export. Which one a file is, and so how its input is
prepared and its outputs read, is told by its outputs when it is loaded.

What each layout is (facts from MMDeploy's ``yolox_head`` rewriter, its detection deploy
configs, MMPose's YOLOX Human-Art configs and rtmlib's ``YOLOX`` wrapper):

``"yolox"``, MMDeploy end2end (``yolox_*_humanart`` in ``ldnet weights list``)
    input ``input`` float32 (1, 3, H, W): the image **BGR**, values 0-255 (no mean, no std:
    YOLOX's ``DetDataPreprocessor`` has neither), placed top-left, grey 114 on the right and
    bottom (see ``detector_boxes``). Outputs ``dets`` (1, N, 5) ``x1, y1, x2, y2, score`` in
    input pixels, score = class sigmoid x objectness sigmoid, and ``labels`` (1, N) int64,
    COCO's 80 classes (person = 0). NMS is **inside the graph** (class-wise, IoU 0.65 and
    score 0.01 from the model's ``test_cfg``, at most 100 boxes from the deploy config's
    ``keep_top_k``), so N is what survived it.
``"ultralytics-nms"``
    input float32 (1, 3, H, W) **RGB** in [0, 1], centred letterbox, grey 114; output
    (1, N, 6) or (N, 6) ``x1, y1, x2, y2, score, class`` after NMS (``nms=True`` exports).
``"ultralytics-raw"``
    the same input; output (1, 4 + C, A): ``cx, cy, w, h`` then C class scores per anchor,
    no NMS (Ultralytics' default export).

Then, for every layout: the person rows (``person_class``, 0) with score >= ``score_threshold``
are kept, NMS at ``nms_iou`` runs over them (for YOLOX a second pass: at 0.65 it changes
nothing, lower it to merge more), and the boxes go back to image pixels. A dynamic H or W
takes ``input_hw`` (the catalogue's size), else 640.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .detector_boxes import letterbox, nms_xyxy, xyxy_to_xywh
from .errors import DetectorError

LAYOUTS = ("yolox", "ultralytics-nms", "ultralytics-raw")
DEFAULT_NMS_IOU = {"yolox": 0.65, "ultralytics-nms": 0.45, "ultralytics-raw": 0.45}
DYNAMIC_SIDE_PX = 640


def layout_of(shapes: list[tuple[int, ...]], source: str) -> str:
    """The layout that output shapes (of a run) belong to; anything else is refused."""
    first = shapes[0]
    if len(first) == 3 and first[0] == 1 and first[2] == 5:
        if len(shapes) < 2 or tuple(shapes[1]) != first[:2]:
            found = list(shapes[1]) if len(shapes) > 1 else "none"
            raise DetectorError(
                f"{source}: output 0 of shape {list(first)} looks like MMDeploy's dets "
                f"(1, N, 5) but output 1 (labels, expected (1, {first[1]})) is {found}"
            )
        return "yolox"
    if len(first) == 3 and first[0] == 1 and 5 <= first[1] < first[2]:
        return "ultralytics-raw"
    if (len(first) == 3 and first[0] == 1 and first[2] == 6) or (len(first) == 2 and first[1] == 6):
        return "ultralytics-nms"
    raise DetectorError(
        f"{source}: unexpected detector output of shape {list(first)}; expected MMDeploy "
        "YOLOX dets (1, N, 5) + labels (1, N), (1, N, 6) x1,y1,x2,y2,score,class after NMS, "
        "or (1, 4+C, A) raw YOLOv8 boxes"
    )


class OnnxPersonDetector:
    """Person boxes from an ONNX detector (see the module docstring for the accepted files).

    Called on a BGR uint8 image; returns boxes (N, 4) x, y, w, h in image pixels and scores
    (N,), best first."""

    def __init__(
        self,
        path: str | Path,
        score_threshold: float = 0.3,
        nms_iou: float | None = None,
        person_class: int = 0,
        threads: int | None = None,
        input_hw: tuple[int, int] | None = None,
        name: str | None = None,
    ):
        from ldnet.inference.backends import onnx_session

        self.path = Path(path)
        self.name = name or self.path.name
        if not self.path.is_file():
            raise DetectorError(f"{self.path}: no such ONNX detector file")
        try:
            self.session = onnx_session(self.path, threads)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            reason = str(error).strip().splitlines()[0][:200]
            raise DetectorError(f"{self.path}: not a loadable ONNX model ({reason})") from None
        self.score_threshold = score_threshold
        self.person_class = person_class
        first = self.session.get_inputs()[0]
        shape = list(first.shape)
        if len(shape) != 4 or shape[1] not in (3, "3") or "float" not in first.type:
            raise DetectorError(
                f"{self.path}: input {first.name!r} is {first.type} of shape {shape}; "
                "expected float32 (1, 3, H, W)"
            )
        self.input_name = first.name
        fallback = input_hw or (DYNAMIC_SIDE_PX, DYNAMIC_SIDE_PX)
        self.input_hw = tuple(
            side if isinstance(side, int) and side > 0 else default
            for side, default in zip(shape[2:], fallback, strict=True)
        )
        # Shapes of a run decide the layout: declared output shapes are often symbolic.
        probe = np.zeros((1, 3, *self.input_hw), np.float32)
        self.layout = layout_of([out.shape for out in self._run(probe)], str(self.path))
        self.nms_iou = DEFAULT_NMS_IOU[self.layout] if nms_iou is None else nms_iou

    def describe(self) -> str:
        height, width = self.input_hw
        return (
            f"{self.name} ({self.layout} ONNX, {width}x{height}), score >= "
            f"{self.score_threshold:g}, NMS IoU {self.nms_iou:g}"
        )

    def _run(self, tensor: np.ndarray) -> list[np.ndarray]:
        try:
            return self.session.run(None, {self.input_name: tensor})
        except Exception as error:
            reason = str(error).strip().splitlines()[0][:200]
            raise DetectorError(f"{self.path}: the detector failed to run ({reason})") from None

    def prepare(self, image_bgr: np.ndarray):
        """The network input for ``image_bgr`` and the letterbox that maps boxes back."""
        if self.layout == "yolox":
            canvas, placed = letterbox(image_bgr, self.input_hw, "top-left")
            tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32)  # BGR, 0-255
        else:
            canvas, placed = letterbox(image_bgr, self.input_hw, "centre")
            tensor = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return np.ascontiguousarray(tensor), placed

    def person_rows(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """x1, y1, x2, y2 (input pixels) and scores of the people in raw outputs, after the
        score threshold and NMS."""
        first = np.asarray(outputs[0], dtype=np.float64)
        if self.layout == "yolox":
            rows = first.reshape(-1, 5)
            labels = np.asarray(outputs[1]).reshape(-1)
            corners, scores = rows[:, :4], rows[:, 4]
            person = np.round(labels).astype(np.int64) == self.person_class
        elif self.layout == "ultralytics-raw":
            rows = first[0].T  # (A, 4 + C)
            if rows.shape[1] <= 4 + self.person_class:
                raise DetectorError(
                    f"{self.path}: output of shape {list(first.shape)} has no class "
                    f"{self.person_class}"
                )
            scores = rows[:, 4 + self.person_class]
            cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
            corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            person = np.ones(len(rows), bool)
        else:
            rows = first.reshape(-1, 6)
            corners, scores = rows[:, :4], rows[:, 4]
            person = rows[:, 5].round() == self.person_class
        keep = person & (scores >= self.score_threshold)
        corners, scores = corners[keep], scores[keep]
        chosen = nms_xyxy(corners, scores, self.nms_iou)
        return corners[chosen], scores[chosen]

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tensor, placed = self.prepare(image_bgr)
        corners, scores = self.person_rows(self._run(tensor))
        boxes = xyxy_to_xywh(placed.to_image(corners))
        return boxes, np.asarray(scores, dtype=np.float64).reshape(-1)
