"""Residual blocks shared by the stems and the parallel branches.

``BasicBlock`` and ``Bottleneck`` are HRNet's (He et al., CVPR 2016, as used by Sun et al.,
CVPR 2019); ``LDBlock`` is the LDNet block: HRNet's BasicBlock with each 3x3 convolution
replaced by an LDConv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ldconv import LDConv


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    """Convolution (no bias) -> BN (-> ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def separable_conv_bn(
    in_channels: int, out_channels: int, stride: int = 1, relu: bool = True
) -> nn.Sequential:
    """Depthwise 3x3 -> BN -> pointwise 1x1 -> BN (-> ReLU): a light stand-in for a 3x3 conv."""
    return nn.Sequential(
        conv_bn(in_channels, in_channels, 3, stride, groups=in_channels, relu=False),
        conv_bn(in_channels, out_channels, 1, relu=relu),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut (HRNet's branch block)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = conv_bn(in_channels, channels, 3)
        self.conv2 = conv_bn(channels, channels, 3, relu=False)
        self.downsample = (
            conv_bn(in_channels, channels, 1, relu=False) if in_channels != channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        # In place: the block's output is fresh, and a new tensor of this size costs page
        # faults on the CPU (BatchNorm's backward needs its input, not its output).
        return F.relu_(self.conv2(self.conv1(x)).add_(identity))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion) with a shortcut (HRNet's stem layer1 block)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv_bn(in_channels, channels, 1)
        self.conv2 = conv_bn(channels, channels, 3)
        self.conv3 = conv_bn(channels, out_channels, 1, relu=False)
        self.downsample = (
            conv_bn(in_channels, out_channels, 1, relu=False)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu_(self.conv3(self.conv2(self.conv1(x))).add_(identity))


class LDBlock(nn.Module):
    """LDNet's branch block: two LDConvs with an identity shortcut.

    ``dynamic=False`` gives the ablation with static depthwise kernels.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        dynamic: bool = True,
        num_kernels: int = 4,
        execution: str = "aggregate",
    ):
        super().__init__()
        options = {"dynamic": dynamic, "num_kernels": num_kernels, "execution": execution}
        self.conv1 = LDConv(in_channels, channels, **options)
        self.conv2 = LDConv(channels, channels, relu=False, **options)
        self.downsample = (
            conv_bn(in_channels, channels, 1, relu=False) if in_channels != channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        # In place: the block's output is fresh, and a new tensor of this size costs page
        # faults on the CPU (BatchNorm's backward needs its input, not its output).
        return F.relu_(self.conv2(self.conv1(x)).add_(identity))


BLOCK_TYPES = ("basic", "ld")


def make_block(kind: str, in_channels: int, channels: int, dynamic: bool, num_kernels: int):
    """One branch block of type ``kind`` ("basic" or "ld")."""
    if kind == "basic":
        return BasicBlock(in_channels, channels)
    if kind == "ld":
        return LDBlock(in_channels, channels, dynamic=dynamic, num_kernels=num_kernels)
    raise ValueError(f"unknown block type {kind!r}; choose from {BLOCK_TYPES}")
