"""Network assembly: stem -> parallel stages -> head, built from a small typed description."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .blocks import ACTIVATIONS
from .krm import RefinedHead, SimpleHead
from .ldconv import INITIAL_TEMPERATURE, DynamicConv2d
from .parallel import Stage, StageSpec
from .stem import HRNetStem, LiteStem

STEM_KINDS = ("hrnet", "lite")
HEAD_KINDS = ("simple", "krm")
INITS = ("hrnet", "ldnet")


@dataclass(frozen=True)
class StemSpec:
    """``kind``: "hrnet" (2 convs + 4 Bottlenecks, 256 out) or "lite" (LDNet's, ``width`` out)."""

    kind: str = "lite"
    width: int = 32


@dataclass(frozen=True)
class HeadSpec:
    """``kind``: "simple" (HRNet's 1x1 conv) or "krm" (1x1 conv + keypoint refinement)."""

    kind: str = "krm"


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that defines an architecture; presets are instances of this.

    ``act``: the activation of the stem, the DW and Basic blocks, transitions and fusion
    ("relu" in HRNet, "leaky_relu" in LDNet; LD blocks and the KRM always use ReLU).
    ``dynamic=False`` makes every LDConv a static convolution (the ablation). ``init``:
    "ldnet" is the official initialisation (every convolution N(0, 0.001), the kernel banks
    Kaiming-uniform); "hrnet" is PyTorch's default with the heatmap layer at N(0, 0.001).
    """

    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    act: str = "relu"
    dynamic: bool = True
    num_kernels: int = 4
    temperature: float = INITIAL_TEMPERATURE
    init: str = "hrnet"
    num_joints: int = 17
    description: str = field(default="", compare=False)

    def with_joints(self, num_joints: int) -> NetworkSpec:
        return replace(self, num_joints=num_joints)


def _check(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


class PoseNet(nn.Module):
    """Top-down pose network: image crop (B, 3, H, W) -> heatmaps (B, J, H/4, W/4).

    ``forward(images, all_outputs=True)`` (or ``forward_all``) returns the list of supervised
    heatmaps for the training loss (one: LDNet, like HRNet, supervises only its final
    output). The flag goes through ``forward`` so that a DistributedDataParallel wrapper sees
    the call.
    """

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        _check(spec.stem.kind, STEM_KINDS, "stem kind")
        _check(spec.head.kind, HEAD_KINDS, "head kind")
        _check(spec.act, ACTIVATIONS, "activation")
        _check(spec.init, INITS, "initialisation")
        self.spec = spec
        options = {
            "dynamic": spec.dynamic,
            "num_kernels": spec.num_kernels,
            "temperature": spec.temperature,
        }
        self.stem = HRNetStem() if spec.stem.kind == "hrnet" else LiteStem(spec.stem.width)

        widths = (self.stem.out_channels,)
        stages = []
        for index, stage_spec in enumerate(spec.stages):
            last = index == len(spec.stages) - 1
            stage = Stage(widths, stage_spec, spec.act, multi_scale_output=not last, **options)
            stages.append(stage)
            widths = stage.out_widths
        self.stages = nn.ModuleList(stages)

        if spec.head.kind == "simple":
            self.head = SimpleHead(widths, spec.num_joints)
        else:
            self.head = RefinedHead(widths, spec.num_joints, **options)
        self._initialise(spec.init)

    @torch.no_grad()
    def _initialise(self, init: str) -> None:
        if init == "ldnet":
            # The official `init_weights`: every nn.Conv2d (the kernel attentions' included)
            # N(0, 0.001) with zero bias, BatchNorm 1 and 0; the kernel banks (parameters of
            # `DynamicConv2d`, not convolutions) keep their Kaiming-uniform start.
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.normal_(module.weight, std=0.001)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
        else:
            # The targets are almost everywhere 0: a heatmap layer that starts there skips
            # the first phase of training, in which it only learns to stop predicting noise.
            nn.init.normal_(self.head.final.weight, std=0.001)
            nn.init.zeros_(self.head.final.bias)

    def forward(self, images: torch.Tensor, all_outputs: bool = False):
        """Final heatmaps; with ``all_outputs`` the list of every supervised heatmap."""
        xs = [self.stem(images)]
        for stage in self.stages:
            xs = stage(xs)
        heatmaps = self.head(xs)
        return [heatmaps] if all_outputs else heatmaps

    def forward_all(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self(images, all_outputs=True)

    @property
    def dynamic_convolutions(self) -> list[DynamicConv2d]:
        return [m for m in self.modules() if isinstance(m, DynamicConv2d)]
