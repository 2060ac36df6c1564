"""LDNet model family: one module per part of the paper's figure."""

from .ldconv import LDConv, set_attention_temperature, set_ldconv_execution
from .posenet import HeadSpec, NetworkSpec, PoseNet, StemSpec
from .presets import PRESETS, build_model

__all__ = [
    "PRESETS",
    "HeadSpec",
    "LDConv",
    "NetworkSpec",
    "PoseNet",
    "StemSpec",
    "build_model",
    "set_attention_temperature",
    "set_ldconv_execution",
]
