"""Heatmap heads: HRNet's 1x1 convolution, and LDNet's keypoint refinement module after it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import conv_bn, dynamic_conv_bn
from .ldconv import INITIAL_TEMPERATURE


class SimpleHead(nn.Module):
    """HRNet's head: a 1x1 convolution (with bias) on the 1/4-resolution branch."""

    def __init__(self, in_widths: Sequence[int], num_joints: int):
        super().__init__()
        self.final = nn.Conv2d(in_widths[0], num_joints, 1)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.final(xs[0])


class KeypointRefinementModule(nn.Module):
    """LDNet's keypoint refinement module (the official ``DYPRM``, after RSN's PRM).

    On the heatmaps h: out1 = ReLU(BN(static 3x3 conv(h))); a spatial attention
    s = sigmoid(ReLU(BN(dynamic 9x9 conv(ReLU(BN(dynamic 1x1 conv(out1))))))); and the
    refined heatmaps out1 * (1 + sigmoid(out1) * s). ``dynamic=False``: static 1x1 and 9x9.
    """

    def __init__(
        self,
        num_joints: int,
        dynamic: bool = True,
        num_kernels: int = 4,
        temperature: float = INITIAL_TEMPERATURE,
    ):
        super().__init__()
        options = {"dynamic": dynamic, "num_kernels": num_kernels, "temperature": temperature}
        self.conv1 = conv_bn(num_joints, num_joints, 3)
        self.conv2 = dynamic_conv_bn(num_joints, num_joints, 1, **options)
        self.conv3 = dynamic_conv_bn(num_joints, num_joints, 9, **options)

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(heatmaps)
        spatial = torch.sigmoid(self.conv3(self.conv2(out1)))
        return out1 * (1 + torch.sigmoid(out1) * spatial)


class RefinedHead(nn.Module):
    """LDNet's head: HRNet's 1x1 convolution to heatmaps, then the refinement module."""

    def __init__(
        self,
        in_widths: Sequence[int],
        num_joints: int,
        dynamic: bool = True,
        num_kernels: int = 4,
        temperature: float = INITIAL_TEMPERATURE,
    ):
        super().__init__()
        self.final = nn.Conv2d(in_widths[0], num_joints, 1)
        self.krm = KeypointRefinementModule(num_joints, dynamic, num_kernels, temperature)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.krm(self.final(xs[0]))
