"""Heatmap heads: HRNet's 1x1 head and LDNet's keypoint refinement module (KRM)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LDBlock, conv_bn


def init_heatmap_layer(conv: nn.Conv2d) -> nn.Conv2d:
    """Near-zero start for a layer that outputs heatmaps (HRNet: N(0, 0.001), bias 0).

    The targets are almost everywhere 0: starting there skips the first phase of training,
    in which a default-initialised head only learns to stop predicting noise.
    """
    nn.init.normal_(conv.weight, std=0.001)
    nn.init.zeros_(conv.bias)
    return conv


class SimpleHead(nn.Module):
    """HRNet's head: a 1x1 convolution (with bias) on the 1/4-resolution branch."""

    def __init__(self, in_widths: Sequence[int], num_joints: int):
        super().__init__()
        self.final = init_heatmap_layer(nn.Conv2d(in_widths[0], num_joints, 1))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.final(xs[0])]


class KeypointRefinementModule(nn.Module):
    """LDNet's keypoint refinement module.

    Semantic features (the low-resolution branches, projected and upsampled to 1/4) are fused
    with the spatial features of the 1/4 branch. An intermediate heatmap is predicted from the
    fusion (it has its own supervision) and fed back, so the refinement LD blocks see both the
    features and the current estimate of the keypoint layout before the final heatmap.
    """

    def __init__(
        self,
        in_widths: Sequence[int],
        num_joints: int,
        width: int = 64,
        num_blocks: int = 2,
        dynamic: bool = True,
        num_kernels: int = 4,
        fuse_kernel: int = 1,
    ):
        super().__init__()
        self.semantic = nn.ModuleList(conv_bn(w, width, 1, relu=False) for w in in_widths[1:])
        self.fuse = conv_bn(in_widths[0] + width, width, fuse_kernel)
        self.intermediate = init_heatmap_layer(nn.Conv2d(width, num_joints, 1))
        self.heatmap_embed = conv_bn(num_joints, width, 1, relu=False)
        self.refine = nn.Sequential(
            *[
                LDBlock(width, width, dynamic=dynamic, num_kernels=num_kernels)
                for _ in range(num_blocks)
            ]
        )
        self.final = init_heatmap_layer(nn.Conv2d(width, num_joints, 1))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        spatial = xs[0]
        size = spatial.shape[-2:]
        semantic = None
        for project, x in zip(self.semantic, xs[1:], strict=True):
            up = F.interpolate(project(x), size=size, mode="bilinear", align_corners=False)
            semantic = up if semantic is None else semantic + up
        if semantic is None:
            raise ValueError("the keypoint refinement module needs at least two branches")
        fused = self.fuse(torch.cat([spatial, F.relu(semantic)], dim=1))
        intermediate = self.intermediate(fused)
        refined = self.refine(fused + self.heatmap_embed(intermediate))
        return [intermediate, self.final(refined)]
