"""LDConvs whose kernel attention does not move, as the static convolutions they compute.

An LDConv mixes K kernels per sample with softmax(z / T). The official LDNet starts at
T = 34 and its training code never lowers it, so a trained network's attentions stay
within about 1e-3 of 1/K whatever the picture (docs/model.md): each LDConv computes one
fixed kernel, the attention-weighted mean of its bank. Written as that kernel it is an
ordinary convolution: a quarter of the mixture's multiply-adds in a dynamic-batch graph,
and one quantized tensor where the mixture quantizes K responses, their weighted copies and
their sum.

That is a change of the network, so it is measured before it is used: the attention is
taken as its mean over the given crops (the int8 calibration crops), and the collapsed
network is kept only if its heatmaps on those crops stay within ``COLLAPSE_TOLERANCE`` of
the dynamic network's peak. A network whose attention does move (trained with a falling
temperature, say) keeps its LDConvs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ldnet.models.ldconv import DynamicConv2d

# Largest heatmap change, as a fraction of the dynamic network's peak on the same crops,
# for which the collapsed network stands in for it: a tenth or less of what int8 itself moves
# them (4-30 % of the peak on the demo and `ldnet_w32` checkpoints). The collapse moved the
# demo checkpoint's by 1.2e-6; fixing a trained `ldnet_w32`'s attentions at exactly 1/4 moved
# its heatmaps by at most 0.13 % of the peak (docs/model.md).
COLLAPSE_TOLERANCE = 1e-2
# The mean and the check use at most this many of the crops, evenly spread: two float passes
# over them, seconds for the demo's `ldnet_s`, about a minute for `ldnet_w32` on two cores.
COLLAPSE_CROPS = 512


@dataclass
class Collapse:
    """What ``collapse_steady_ldconvs`` found: the network to export (``model``, the input
    itself when nothing was collapsed), how far the attentions strayed from their means and
    how far the heatmaps moved (fraction of the peak)."""

    model: nn.Module
    ldconvs: int  # LDConvs collapsed (0: none, the network is unchanged)
    attention_spread: float  # largest |attention - its mean| over crops, kernels and layers
    heatmap_change: float

    def describe(self) -> str:
        if not self.ldconvs:
            return "no LDConvs"
        return (
            f"{self.ldconvs} LDConvs as static convolutions at their mean attention "
            f"(attention within {self.attention_spread:.1e} of it; heatmaps within "
            f"{self.heatmap_change:.1e} of the peak)"
        )


@torch.no_grad()
def collapse_steady_ldconvs(
    model: nn.Module, crops: np.ndarray, batch_size: int = 32
) -> Collapse | None:
    """``model`` (eval mode) with every LDConv replaced by one convolution with its kernels
    mixed at their mean attention over ``crops``, if its heatmaps on ``crops`` stay within
    ``COLLAPSE_TOLERANCE`` of the peak; None if they do not. A model without LDConvs comes
    back as it is."""
    model = model.eval()
    crops = crops[:: -(-len(crops) // COLLAPSE_CROPS)]
    ldconvs = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    if not ldconvs:
        return Collapse(model, 0, 0.0, 0.0)
    attentions: dict[DynamicConv2d, list[torch.Tensor]] = {m: [] for m in ldconvs}
    hooks = [
        m.attention.register_forward_hook(
            lambda _module, _args, output, m=m: attentions[m].append(output)
        )
        for m in ldconvs
    ]
    try:
        expected = _heatmaps(model, crops, batch_size)
    finally:
        for hook in hooks:
            hook.remove()
    collapsed, spread = copy.deepcopy(model), 0.0
    names = {module: name for name, module in model.named_modules()}
    for module, outputs in attentions.items():
        attention = torch.cat(outputs)
        mean = attention.mean(dim=0)
        spread = max(spread, float((attention - mean).abs().max()))
        parent, _, child = names[module].rpartition(".")
        setattr(collapsed.get_submodule(parent), child, _static_conv(module, mean))
    change = float(
        (_heatmaps(collapsed, crops, batch_size) - expected).abs().max() / expected.abs().max()
    )
    if change > COLLAPSE_TOLERANCE:
        return None
    return Collapse(collapsed, len(ldconvs), spread, change)


def _static_conv(module: DynamicConv2d, attention: torch.Tensor) -> nn.Conv2d:
    """The convolution ``module`` computes when its attention is ``attention`` (K,)."""
    k = module.kernel_size
    conv = nn.Conv2d(
        module.in_channels,
        module.out_channels,
        k,
        module.stride,
        module.padding,
        bias=module.bias is not None,
        device=module.weight.device,
        dtype=module.weight.dtype,
    )
    conv.weight.copy_(module.aggregated_kernels(attention.unsqueeze(0)))
    if module.bias is not None:
        conv.bias.copy_(module.bias)
    return conv


def _heatmaps(model: nn.Module, crops: np.ndarray, batch_size: int) -> torch.Tensor:
    return torch.cat(
        [
            model(torch.from_numpy(crops[start : start + batch_size]))
            for start in range(0, len(crops), batch_size)
        ]
    )
