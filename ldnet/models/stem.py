"""Feature extraction heads (stems): image -> features at 1/4 resolution."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Bottleneck, conv_bn


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


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: channel g * n + i goes to i * groups + g."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class LiteStem(nn.Module):
    """LDNet's lightweight feature extraction head (Lite-HRNet's stem, expansion 1).

    A stride-2 3x3 convolution, then the channels split in two halves that each go down to
    1/4 resolution: half A by a stride-2 depthwise 3x3 and a 1x1; half B by a 1x1, a stride-2
    depthwise 3x3 and a 1x1. Concatenated, then shuffled across the halves. The paper's figure
    draws half A as an identity; the official code strides it, as here. Its convolutions have
    biases (before BatchNorm, so they only matter as parameters), and its activation is
    LeakyReLU(0.01) after every convolution but the two depthwise ones.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        if width % 2:
            raise ValueError(f"the light stem splits its channels in two, got width {width}")
        half = width // 2
        act = "leaky_relu"
        self.conv1 = conv_bn(3, width, 3, stride=2, act=act, bias=True)
        self.half_a = nn.Sequential(
            conv_bn(half, half, 3, stride=2, groups=half, act=None, bias=True),
            conv_bn(half, half, 1, act=act, bias=True),
        )
        # Expansion ratio 1: the 1x1 "expansion" goes from half to the full width.
        self.half_b = nn.Sequential(
            conv_bn(half, width, 1, act=act, bias=True),
            conv_bn(width, width, 3, stride=2, groups=width, act=None, bias=True),
            conv_bn(width, half, 1, act=act, bias=True),
        )
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv1(x).chunk(2, dim=1)
        return channel_shuffle(torch.cat((self.half_a(a), self.half_b(b)), dim=1), 2)
