"""Feature extraction heads (stems): image -> features at 1/4 resolution."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Bottleneck, LDBlock, conv_bn, separable_conv_bn


class HRNetStem(nn.Module):
    """HRNet's stem: two 64-channel stride-2 3x3 convolutions and four Bottlenecks (256 out)."""

    def __init__(self, width: int = 64, num_bottlenecks: int = 4):
        super().__init__()
        self.conv1 = conv_bn(3, width, 3, stride=2)
        self.conv2 = conv_bn(width, width, 3, stride=2)
        layers = [Bottleneck(width, width)]
        layers += [Bottleneck(width * 4, width) for _ in range(num_bottlenecks - 1)]
        self.layer1 = nn.Sequential(*layers)
        self.out_channels = width * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.conv2(self.conv1(x)))


class LightStem(nn.Module):
    """LDNet's lightweight feature extraction head.

    A stride-2 3x3 convolution, a stride-2 depthwise-separable convolution down to 1/4
    resolution, then ``num_blocks`` LD blocks at 1/4. Roughly a tenth of the MACs and
    parameters of HRNet's stem.
    """

    def __init__(
        self,
        width: int = 32,
        out_channels: int = 64,
        num_blocks: int = 2,
        dynamic: bool = True,
        num_kernels: int = 4,
    ):
        super().__init__()
        self.conv1 = conv_bn(3, width, 3, stride=2)
        self.conv2 = separable_conv_bn(width, out_channels, stride=2)
        self.blocks = nn.Sequential(
            *[
                LDBlock(out_channels, out_channels, dynamic=dynamic, num_kernels=num_kernels)
                for _ in range(num_blocks)
            ]
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.conv2(self.conv1(x)))
