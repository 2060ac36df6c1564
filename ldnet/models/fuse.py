"""Inference-time folding of BatchNorm into the preceding convolution.

In eval mode a BatchNorm is a per-channel affine map, y = a * x + b, so it can be absorbed
by the convolution before it (weights scaled by a, bias b added). That removes one full
pass over every feature map. For the dynamic depthwise convolution the scale goes into
each of the K kernels of the bank (the aggregation is linear, so every aggregated kernel is
scaled the same way) and the shift becomes a bias after the aggregated convolution.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .ldconv import DynamicDepthwiseConv, LDConv


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale, shift = _bn_affine(bn)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        # On the model's device and dtype: a fused CUDA model stays a CUDA model.
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(bias * scale + shift)
    return fused


def _fold_into_dynamic(conv: DynamicDepthwiseConv, bn: nn.BatchNorm2d) -> None:
    scale, shift = _bn_affine(bn)
    conv.weight.mul_(scale.view(1, -1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.bias = nn.Parameter(bias * scale + shift)


@torch.no_grad()
def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every Conv -> BatchNorm pair folded.

    Outputs equal the original model's in eval mode (up to float rounding).
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if isinstance(module, LDConv):
            if isinstance(module.depthwise, DynamicDepthwiseConv):
                _fold_into_dynamic(module.depthwise, module.bn_depthwise)
            else:
                module.depthwise = _fold_into_conv(module.depthwise, module.bn_depthwise)
            module.bn_depthwise = nn.Identity()
            module.pointwise = _fold_into_conv(module.pointwise, module.bn_pointwise)
            module.bn_pointwise = nn.Identity()
        elif isinstance(module, nn.Sequential):
            children = list(module.children())
            for index in range(len(children) - 1):
                conv, bn = children[index], children[index + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[index] = _fold_into_conv(conv, bn)
                    module[index + 1] = nn.Identity()
    return fused
