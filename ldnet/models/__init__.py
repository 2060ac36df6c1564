"""LDNet model family: one module per part of the paper's figure."""

from .ldconv import (
    DynamicConv2d,
    attention_temperature,
    set_attention_temperature,
    set_ldconv_execution,
)
from .posenet import HeadSpec, NetworkSpec, PoseNet, StemSpec
from .presets import PRESETS, build_model

__all__ = [
    "PRESETS",
    "DynamicConv2d",
    "HeadSpec",
    "NetworkSpec",
    "PoseNet",
    "StemSpec",
    "attention_temperature",
    "build_model",
    "set_attention_temperature",
    "set_ldconv_execution",
]
