"""High-resolution parallel sub-network (HRNet stages 2-4, Sun et al., CVPR 2019).

Branch ``i`` runs at 1/4 * 2^-i of the input resolution. A stage first adds a branch
(transition), then repeats modules: every branch runs its blocks, then every branch
receives the sum of all branches resampled to its resolution (fusion).

Transitions and fusion are HRNet's (1x1 projection + nearest upsampling; chains of stride-2
3x3 convolutions) in both networks; only the activation differs: ReLU in HRNet, LeakyReLU(0.01)
in LDNet (after every transition convolution, every intermediate downsampling step and every
fused sum, exactly where HRNet has ReLU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import activate_, conv_bn, make_block
from .ldconv import INITIAL_TEMPERATURE


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``num_modules`` modules over ``len(widths)`` branches.

    ``blocks`` names the block type of each branch ("dw", "basic" or "ld").
    """

    num_modules: int
    num_blocks: tuple[int, ...]
    widths: tuple[int, ...]
    blocks: tuple[str, ...]

    def __post_init__(self):
        n = len(self.widths)
        if len(self.num_blocks) != n or len(self.blocks) != n:
            raise ValueError(
                f"stage with {n} widths needs {n} num_blocks and {n} blocks, got "
                f"{len(self.num_blocks)} and {len(self.blocks)}"
            )


class Upsample(nn.Module):
    """1x1 projection then nearest upsampling by ``factor`` (HRNet's j > i fusion path).

    ``HighResolutionModule`` calls only ``project`` and shares the upsampling between the
    branches it sums; ``forward`` is the path on its own (the definition it is tested against).
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        self.project = conv_bn(in_channels, out_channels, 1, act=None)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.project(x), scale_factor=self.factor, mode="nearest")


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _fuse_path(i: int, j: int, widths: Sequence[int], act: str) -> nn.Module:
    """The path that brings branch j to branch i's resolution and width."""
    if j > i:
        return Upsample(widths[j], widths[i], 2 ** (j - i))
    steps = []
    for step in range(i - j):
        last = step == i - j - 1
        # Intermediate steps keep branch j's width and an activation; the last one maps to
        # branch i's width without (it is summed, then activated), as in HRNet.
        out = widths[i] if last else widths[j]
        steps.append(conv_bn(widths[j], out, 3, stride=2, act=None if last else act))
    return nn.Sequential(*steps)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by multi-resolution fusion."""

    def __init__(
        self,
        widths: Sequence[int],
        num_blocks: Sequence[int],
        blocks: Sequence[str],
        act: str = "relu",
        multi_scale_output: bool = True,
        dynamic: bool = True,
        num_kernels: int = 4,
        temperature: float = INITIAL_TEMPERATURE,
    ):
        super().__init__()
        options = {"dynamic": dynamic, "num_kernels": num_kernels, "temperature": temperature}
        self.act = act
        self.branches = nn.ModuleList(
            nn.Sequential(*[make_block(kind, width, width, act, **options) for _ in range(count)])
            for width, count, kind in zip(widths, num_blocks, blocks, strict=True)
        )
        num_outputs = len(widths) if multi_scale_output else 1
        if len(widths) == 1:
            self.fuse = None
        else:
            self.fuse = nn.ModuleList(
                nn.ModuleList(
                    nn.Identity() if i == j else _fuse_path(i, j, widths, act)
                    for j in range(len(widths))
                )
                for i in range(num_outputs)
            )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if self.fuse is None:
            return xs
        outputs = []
        for i, paths in enumerate(self.fuse):
            # The branches below i in resolution, projected and upsampled, summed from the
            # lowest resolution up in x2 steps: nearest upsampling is linear and U4 = U2 U2,
            # so this is HRNet's sum of U_{2^(j-i)}(P_j x_j), with one upsampling and one
            # addition at branch i's resolution instead of one of each per branch.
            upsampled = None
            for j in range(len(xs) - 1, i, -1):
                projected = paths[j].project(xs[j])
                upsampled = projected if upsampled is None else projected + _upsample2(upsampled)
            terms = [xs[i]] + ([] if upsampled is None else [_upsample2(upsampled)])
            # The downsampled branches come last: each ends in a convolution that ONNX
            # Runtime fuses with the addition (and the final ReLU) into one operator.
            terms += [paths[j](xs[j]) for j in range(i)]
            # The first sum is a new tensor (xs[i] is a branch's output itself); later terms
            # go into it in place: no new full-size tensor each.
            total = terms[0] + terms[1]
            for term in terms[2:]:
                total.add_(term)
            outputs.append(activate_(total, self.act))
        return outputs


class Transition(nn.Module):
    """Adapts the previous stage's branches to the next stage's widths and adds new branches."""

    def __init__(self, in_widths: Sequence[int], out_widths: Sequence[int], act: str = "relu"):
        super().__init__()
        layers = []
        for i, width in enumerate(out_widths):
            if i < len(in_widths):
                layers.append(
                    nn.Identity()
                    if in_widths[i] == width
                    else conv_bn(in_widths[i], width, 3, act=act)
                )
            else:
                # A new branch grows from the lowest-resolution existing one by stride-2 steps.
                steps = []
                for step in range(i + 1 - len(in_widths)):
                    last = step == i - len(in_widths)
                    out = width if last else in_widths[-1]
                    steps.append(conv_bn(in_widths[-1], out, 3, stride=2, act=act))
                layers.append(nn.Sequential(*steps))
        self.layers = nn.ModuleList(layers)
        self.num_inputs = len(in_widths)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for i, layer in enumerate(self.layers):
            source = xs[i] if i < self.num_inputs else xs[-1]
            outputs.append(layer(source))
        return outputs


class Stage(nn.Module):
    """Transition into the stage, then its modules."""

    def __init__(
        self,
        in_widths: Sequence[int],
        spec: StageSpec,
        act: str = "relu",
        multi_scale_output: bool = True,
        dynamic: bool = True,
        num_kernels: int = 4,
        temperature: float = INITIAL_TEMPERATURE,
    ):
        super().__init__()
        self.transition = Transition(in_widths, spec.widths, act)
        self.hr_modules = nn.Sequential()
        for index in range(spec.num_modules):
            last = index == spec.num_modules - 1
            self.hr_modules.append(
                HighResolutionModule(
                    spec.widths,
                    spec.num_blocks,
                    spec.blocks,
                    act,
                    multi_scale_output=multi_scale_output or not last,
                    dynamic=dynamic,
                    num_kernels=num_kernels,
                    temperature=temperature,
                )
            )
        self.out_widths = tuple(spec.widths) if multi_scale_output else (spec.widths[0],)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = self.transition(xs)
        for module in self.hr_modules:
            xs = module(xs)
        return xs
