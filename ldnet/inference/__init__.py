"""The test-time path shared by ``ldnet test``, validation in ``ldnet train`` and
``ldnet predict``: weights and their record, backends, crops -> keypoints, rescoring and
OKS-NMS. Neither ``ldnet.engine`` nor ``ldnet.predict`` owns it; both use it."""

from ldnet.models.record import ModelRecord, record_from_checkpoint, record_from_metadata

from .backends import (
    BACKENDS,
    OnnxRuntimeBackend,
    OpenVinoBackend,
    TorchBackend,
    make_backend,
    onnx_file_backend,
)
from .people import (
    PersonPrediction,
    box_areas_px,
    coco_results_rows,
    joint_scores,
    oks_matrix,
    oks_nms,
    oks_nms_indices,
    people_results,
    rescore,
)
from .topdown import TopDownPredictor, predict_dataset
from .weights import load_model, record_from_onnx

__all__ = [
    "BACKENDS",
    "ModelRecord",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "PersonPrediction",
    "TopDownPredictor",
    "TorchBackend",
    "box_areas_px",
    "coco_results_rows",
    "joint_scores",
    "load_model",
    "make_backend",
    "oks_matrix",
    "oks_nms",
    "oks_nms_indices",
    "onnx_file_backend",
    "people_results",
    "predict_dataset",
    "record_from_checkpoint",
    "record_from_metadata",
    "record_from_onnx",
    "rescore",
]
