"""Inference-time folding of BatchNorm into the preceding convolution.

In eval mode a BatchNorm is a per-channel affine map, y = a * x + b, so it can be absorbed
by the convolution before it (weights scaled by a, bias b added). That removes one full
pass over every feature map. For a dynamic convolution the scale goes into each of the K
kernels of the bank (the mixing is linear, so every mixed kernel is scaled the same way) and
the shift becomes the bias of the mixed convolution.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .ldconv import DynamicConv2d, KernelAttention


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


def _fold_into_dynamic(conv: DynamicConv2d, bn: nn.BatchNorm2d) -> DynamicConv2d:
    scale, shift = _bn_affine(bn)
    conv.weight.mul_(scale.view(1, -1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.bias = nn.Parameter(bias * scale + shift)
    return conv


@torch.no_grad()
def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every convolution -> BatchNorm pair folded.

    Every such pair sits in an ``nn.Sequential`` (``conv_bn``, ``dynamic_conv_bn``). The
    kernel attentions' temperature is folded into their last 1x1 convolution and the kernel
    banks are laid out channels-last. Outputs equal the original model's in eval mode (up to
    float rounding).
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for index in range(len(children) - 1):
            conv, bn = children[index], children[index + 1]
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            if isinstance(conv, nn.Conv2d):
                module[index] = _fold_into_conv(conv, bn)
            elif isinstance(conv, DynamicConv2d):
                module[index] = _fold_into_dynamic(conv, bn)
            else:
                continue
            module[index + 1] = nn.Identity()
    for module in fused.modules():
        if isinstance(module, KernelAttention):
            # softmax(fc2(h) / T) = softmax((fc2 / T)(h)): one division less per LDConv.
            module.fc2.weight.div_(module.temperature)
            module.fc2.bias.div_(module.temperature)
            module.temperature = 1.0
    return banks_to_channels_last(fused)


@torch.no_grad()
def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D weights in channels-last memory (in place), as
    ``model.to(memory_format=torch.channels_last)`` would do (which refuses 5-D tensors),
    LDConv's kernel banks (5-D) left as they are (see ``banks_to_channels_last``)."""
    for module in model.modules():
        for _name, tensor in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model


@torch.no_grad()
def banks_to_channels_last(model: nn.Module) -> nn.Module:
    """LDConv's kernel banks (K, out, in, k, k) laid out as (K, out, k, k, in) in memory (in
    place; shapes do not change), so that they mix straight into channels-last kernels.

    For inference (``fuse_for_inference`` does it): at batch 1 it saves the copy of each
    mixed kernel into the convolution's layout (`ldnet_w32` 8 % faster), and the per-sample
    executions read the kernels as they come. Training keeps the created order: there the
    NCHW grouped convolution of NCHW kernels is the faster one.
    """
    for module in model.modules():
        # Measured on CPUs only: a CUDA model keeps the created order.
        if (
            isinstance(module, DynamicConv2d)
            and module.kernel_size > 1
            and not module.weight.is_cuda
        ):
            bank = module.weight.data
            module.weight.data = bank.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return model
