"""Parameters and multiply-accumulates (MACs) of a model, per part.

MACs come from PyTorch's own ``torch.utils.flop_counter`` (convolutions and matrix
products; it reports FLOPs = 2 x MACs). Normalisation, activations, additions and resampling
are not counted, as in the pose literature's "GFLOPs" tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class PartCost:
    name: str
    params: int
    macs: int


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    parts: tuple[PartCost, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def part_names(model: nn.Module) -> dict[str, str]:
    """Top-level children of a PoseNet -> readable part names (stages are numbered as in
    HRNet: the first parallel stage is "stage2")."""
    names = {}
    for child_name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            for index, _ in enumerate(child):
                names[f"{child_name}.{index}"] = f"stage{index + 2}"
        else:
            names[child_name] = child_name
    if "head" in names:
        head = model.get_submodule("head")
        names["head"] = "krm" if type(head).__name__ == "KeypointRefinementModule" else "head"
    return names


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def measure(model: nn.Module, input_size: tuple[int, int]) -> Complexity:
    """Count parameters and MACs of ``model`` for one image of ``input_size`` (H, W)."""
    was_training = model.training
    model.eval()
    image = torch.zeros(1, 3, *input_size)
    counter = FlopCounterMode(display=False, depth=None)
    try:
        with counter:
            model(image)
    finally:
        model.train(was_training)
    flops_by_module = counter.get_flop_counts()
    root = type(model).__name__
    parts = []
    for path, name in part_names(model).items():
        flops = sum(flops_by_module.get(f"{root}.{path}", {}).values())
        parts.append(PartCost(name, count_params(model.get_submodule(path)), flops // 2))
    total_flops = sum(flops_by_module.get("Global", {}).values())
    return Complexity(count_params(model), total_flops // 2, tuple(parts))
