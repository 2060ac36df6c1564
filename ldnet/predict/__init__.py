"""Prediction on images, folders, videos and cameras, with PyTorch or ONNX Runtime."""

from .boxes import BoxError, DetectionFile, check_boxes, whole_image_box
from .detector_choice import ChosenDetector, choose_detector
from .detectors import HogPersonDetector, hog_available
from .errors import DetectorError, PredictInputError
from .estimator import PoseEstimator, Poses, oks_suppress
from .onnx_detector import OnnxPersonDetector
from .pipeline import PredictOptions, PredictSummary, predict_source
from .smoothing import OneEuroFilter, PoseSmoother
from .sources import Frame, SourceError, open_source

__all__ = [
    "BoxError",
    "ChosenDetector",
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
    "choose_detector",
    "oks_suppress",
    "open_source",
    "predict_source",
    "hog_available",
    "whole_image_box",
]
