"""Branch blocks and the convolution units they are made of.

``BasicBlock`` and ``Bottleneck`` are HRNet's (He et al., CVPR 2016, as used by Sun et al.,
CVPR 2019); ``DWBlock`` and ``LDBlock`` are LDNet's (the official code's ``DWBlock`` and
``Dy_BasicBlock``). The activation is a parameter because LDNet changes it where HRNet has
ReLU: LeakyReLU(0.01) in its DW blocks, BasicBlocks, stem, transitions and fusion, but ReLU
in its LD blocks and refinement module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ldconv import INITIAL_TEMPERATURE, DynamicConv2d

ACTIVATIONS = ("relu", "leaky_relu")
LEAKY_SLOPE = 0.01


def activation(kind: str) -> nn.Module:
    """ReLU or LeakyReLU(0.01), in place."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    raise ValueError(f"unknown activation {kind!r}; choose from {ACTIVATIONS}")


def activate_(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``activation(kind)`` applied in place to a fresh tensor."""
    return F.relu_(x) if kind == "relu" else F.leaky_relu_(x, LEAKY_SLOPE)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    act: str | None = "relu",
    bias: bool = False,
) -> nn.Sequential:
    """Convolution -> BN (-> activation). ``bias``: the light stem's convolutions have one."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=bias,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)


def dynamic_conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    act: str | None = "relu",
    dynamic: bool = True,
    num_kernels: int = 4,
    temperature: float = INITIAL_TEMPERATURE,
) -> nn.Sequential:
    """LDConv -> BN (-> activation); ``dynamic=False`` gives a static convolution instead."""
    if not dynamic:
        return conv_bn(in_channels, out_channels, kernel_size, act=act)
    layers: list[nn.Module] = [
        DynamicConv2d(
            in_channels, out_channels, kernel_size, num_kernels=num_kernels, temperature=temperature
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)


def _shortcut(in_channels: int, out_channels: int) -> nn.Module | None:
    # HRNet's branch shortcut: a 1x1 projection only where the width changes.
    return conv_bn(in_channels, out_channels, 1, act=None) if in_channels != out_channels else None


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut (HRNet's branch block)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, act: str = "relu"):
        super().__init__()
        self.conv1 = conv_bn(in_channels, channels, 3, act=act)
        self.conv2 = conv_bn(channels, channels, 3, act=None)
        self.downsample = _shortcut(in_channels, channels)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        # In place: the block's output is fresh (BatchNorm's backward needs its input, not
        # its output).
        return activate_(self.conv2(self.conv1(x)).add_(identity), self.act)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion) with a shortcut (HRNet's stem layer1 block)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv_bn(in_channels, channels, 1)
        self.conv2 = conv_bn(channels, channels, 3)
        self.conv3 = conv_bn(channels, out_channels, 1, act=None)
        self.downsample = _shortcut(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu_(self.conv3(self.conv2(self.conv1(x))).add_(identity))


class DWBlock(nn.Module):
    """LDNet's stage-2 block: 3x3 depthwise -> BN -> act, 1x1 -> BN, shortcut, act."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, act: str = "leaky_relu"):
        super().__init__()
        if in_channels != channels:
            # The official block's depthwise convolution keeps the width (groups = in).
            raise ValueError(f"a DW block keeps its width, got {in_channels} -> {channels}")
        self.conv1 = conv_bn(channels, channels, 3, groups=channels, act=act)
        self.conv2 = conv_bn(channels, channels, 1, act=None)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate_(self.conv2(self.conv1(x)).add_(x), self.act)


class LDBlock(nn.Module):
    """LDNet's LD block: HRNet's BasicBlock with both 3x3 convolutions LDConvs, ReLU.

    ``dynamic=False`` gives the ablation with static kernels (a ReLU BasicBlock).
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        dynamic: bool = True,
        num_kernels: int = 4,
        temperature: float = INITIAL_TEMPERATURE,
    ):
        super().__init__()
        options = {"dynamic": dynamic, "num_kernels": num_kernels, "temperature": temperature}
        self.conv1 = dynamic_conv_bn(in_channels, channels, 3, act="relu", **options)
        self.conv2 = dynamic_conv_bn(channels, channels, 3, act=None, **options)
        self.downsample = _shortcut(in_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu_(self.conv2(self.conv1(x)).add_(identity))


BLOCK_TYPES = ("dw", "basic", "ld")


def make_block(
    kind: str,
    in_channels: int,
    channels: int,
    act: str,
    dynamic: bool = True,
    num_kernels: int = 4,
    temperature: float = INITIAL_TEMPERATURE,
) -> nn.Module:
    """One branch block of type ``kind`` ("dw", "basic" or "ld")."""
    if kind == "dw":
        return DWBlock(in_channels, channels, act)
    if kind == "basic":
        return BasicBlock(in_channels, channels, act)
    if kind == "ld":
        return LDBlock(in_channels, channels, dynamic, num_kernels, temperature)
    raise ValueError(f"unknown block type {kind!r}; choose from {BLOCK_TYPES}")
