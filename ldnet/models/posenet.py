"""Network assembly: stem -> parallel stages -> head, built from a small typed description."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .krm import KeypointRefinementModule, SimpleHead
from .parallel import FUSION_TYPES, Stage, StageSpec
from .stem import HRNetStem, LightStem


@dataclass(frozen=True)
class StemSpec:
    """``kind``: "hrnet" (2 convs + 4 Bottlenecks) or "light" (LDNet's head)."""

    kind: str = "light"
    width: int = 32
    out_channels: int = 64
    num_blocks: int = 2


@dataclass(frozen=True)
class HeadSpec:
    """``kind``: "simple" (HRNet's 1x1 conv) or "krm" (keypoint refinement module)."""

    kind: str = "krm"
    width: int = 64
    num_blocks: int = 2
    fuse_kernel: int = 1


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that defines an architecture; presets are instances of this."""

    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    fusion: str = "hrnet"
    dynamic: bool = True
    num_kernels: int = 4
    num_joints: int = 17
    description: str = field(default="", compare=False)

    def with_joints(self, num_joints: int) -> NetworkSpec:
        return replace(self, num_joints=num_joints)


class PoseNet(nn.Module):
    """Top-down pose network: image crop (B, 3, H, W) -> heatmaps (B, J, H/4, W/4).

    ``forward`` returns the final heatmaps; ``forward(images, all_outputs=True)`` (or
    ``forward_all``) returns every supervised heatmap (the KRM's intermediate one first, the
    final one last) for the training loss. The flag goes through ``forward`` so that a
    DistributedDataParallel wrapper sees the call.
    """

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        if spec.fusion not in FUSION_TYPES:
            raise ValueError(f"unknown fusion type {spec.fusion!r}; choose from {FUSION_TYPES}")
        self.spec = spec
        options = {"dynamic": spec.dynamic, "num_kernels": spec.num_kernels}
        if spec.stem.kind == "hrnet":
            self.stem = HRNetStem()
        elif spec.stem.kind == "light":
            self.stem = LightStem(
                spec.stem.width, spec.stem.out_channels, spec.stem.num_blocks, **options
            )
        else:
            raise ValueError(f"unknown stem kind {spec.stem.kind!r}; choose from hrnet, light")

        widths = (self.stem.out_channels,)
        stages = []
        keep_all_branches = spec.head.kind == "krm"
        for index, stage_spec in enumerate(spec.stages):
            last = index == len(spec.stages) - 1
            stage = Stage(
                widths,
                stage_spec,
                spec.fusion,
                multi_scale_output=keep_all_branches or not last,
                **options,
            )
            stages.append(stage)
            widths = stage.out_widths
        self.stages = nn.ModuleList(stages)

        if spec.head.kind == "simple":
            self.head = SimpleHead(widths, spec.num_joints)
        elif spec.head.kind == "krm":
            self.head = KeypointRefinementModule(
                widths,
                spec.num_joints,
                spec.head.width,
                spec.head.num_blocks,
                fuse_kernel=spec.head.fuse_kernel,
                **options,
            )
        else:
            raise ValueError(f"unknown head kind {spec.head.kind!r}; choose from simple, krm")

    def forward(self, images: torch.Tensor, all_outputs: bool = False):
        """Final heatmaps; with ``all_outputs`` the list of every supervised heatmap."""
        xs = [self.stem(images)]
        for stage in self.stages:
            xs = stage(xs)
        outputs = self.head(xs)
        return outputs if all_outputs else outputs[-1]

    def forward_all(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self(images, all_outputs=True)
