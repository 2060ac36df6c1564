"""Prediction on images, folders, videos and cameras, with PyTorch or ONNX Runtime."""

from .boxes import BoxError, DetectionFile, check_boxes, whole_image_box
from .detectors import DetectorError, HogPersonDetector, OnnxPersonDetector, hog_available
from .errors import PredictInputError
from .estimator import PoseEstimator, Poses, oks_suppress
from .pipeline import PredictOptions, PredictSummary, predict_source
from .smoothing import OneEuroFilter, PoseSmoother
from .sources import Frame, SourceError, open_source

__all__ = [
    "BoxError",
    "DetectionFile",
    "DetectorError",
    "Frame",
    "HogPersonDetector",
    "OneEuroFilter",
    "OnnxPersonDetector",
    "PoseEstimator",
    "PoseSmoother",
    "Poses",
    "PredictInputError",
    "PredictOptions",
    "PredictSummary",
    "SourceError",
    "check_boxes",
    "oks_suppress",
    "open_source",
    "predict_source",
    "hog_available",
    "whole_image_box",
]
