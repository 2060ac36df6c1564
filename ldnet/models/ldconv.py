"""Lightweight dynamic convolution (LDConv).

A depthwise k x k convolution whose kernel is an input-conditioned mixture of K learned
kernels (Dynamic Convolution, Chen et al., CVPR 2020; CondConv, Yang et al., NeurIPS 2019),
followed by a static pointwise 1x1 convolution for channel mixing. The K-fold kernel bank
only costs depthwise parameters (K * C * k * k), which is what makes it lightweight.

Two executions give the same result because the convolution is linear in its kernel:

* ``"aggregate"``: build one kernel per sample, sum_k a[b, k] * W_k, and run all samples at
  once as a grouped convolution with the batch folded into the groups (B * C groups).
  Cheapest in MACs: one depthwise convolution per sample.
* ``"mixture"``: run the K static depthwise convolutions as one grouped convolution with
  K * C output channels and sum the K results weighted by a[b, k]. K times the depthwise MACs,
  but the graph has a fixed group count, so it exports with a dynamic batch dimension.
* ``"separate"``: the same weighted sum, but as K separate depthwise convolutions (C groups,
  one channel each) scaled per sample and added. Same MACs as ``"mixture"``; this is the
  form ONNX export uses, because ONNX Runtime runs a pure depthwise convolution with its
  blocked (NCHWc) kernels but a grouped convolution with K outputs per group through the
  generic im2col path (measured: about 10 % faster for the whole ``ldnet`` at batch 8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EXECUTIONS = ("aggregate", "mixture", "separate")


class KernelAttention(nn.Module):
    """Per-sample softmax weights over K kernels: GAP -> FC -> ReLU -> FC -> softmax(z / T)."""

    def __init__(
        self, channels: int, num_kernels: int, reduction: int = 8, temperature: float = 1.0
    ):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, num_kernels)
        # Chen et al. anneal T from 30 to 1 early in training to keep all kernels learning;
        # the trainer may change this attribute, inference uses whatever was trained last.
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exported as GlobalAveragePool, which ONNX Runtime runs on its blocked layout; a
        # mean over (2, 3) exports as ReduceMean, which needs the tensor reordered out of it.
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        # This path runs once per LDConv on tiny tensors, so its cost is per operator, not
        # per element: ReLU in place, and no division by a temperature of 1 (as deployed).
        logits = self.fc2(F.relu_(self.fc1(pooled)))
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)


class DynamicDepthwiseConv(nn.Module):
    """Depthwise k x k convolution with an input-conditioned mixture of K kernels."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        num_kernels: int = 4,
        reduction: int = 8,
        execution: str = "aggregate",
    ):
        super().__init__()
        if execution not in EXECUTIONS:
            raise ValueError(f"unknown LDConv execution {execution!r}; choose from {EXECUTIONS}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.num_kernels = num_kernels
        self.execution = execution
        self.attention = KernelAttention(channels, num_kernels, reduction)
        # The bank is stored as (K, C, k*k): a 3-D tensor is left alone by
        # `model.to(memory_format=torch.channels_last)`, and flattens for free.
        self.weight = nn.Parameter(torch.empty(num_kernels, channels, kernel_size * kernel_size))
        bound = 1.0 / math.sqrt(kernel_size * kernel_size)
        # Same range as PyTorch's default for a static depthwise kernel (fan-in k*k).
        nn.init.uniform_(self.weight, -bound, bound)
        # None while training; `fuse_for_inference` folds the following BatchNorm in here.
        self.bias: nn.Parameter | None = None

    def aggregated_kernels(self, attention: torch.Tensor) -> torch.Tensor:
        """(B, K) attention -> (B, C, 1, k, k) per-sample kernels."""
        bank = self.weight.flatten(1)  # (K, C*k*k): one matmul mixes the whole bank
        mixed = attention @ bank
        return mixed.view(-1, self.channels, 1, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.attention(x)
        if self.execution == "aggregate":
            # The bias rides in the convolution: one pass over the output fewer (the
            # separate additions were about 5 % of the eager time in a profile).
            return self._forward_aggregate(x, attention)
        if self.execution == "mixture":
            out = self._forward_mixture(x, attention)
        else:
            out = self._forward_separate(x, attention)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def _forward_aggregate(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        kernels = self.aggregated_kernels(attention).view(
            batch * channels, 1, self.kernel_size, self.kernel_size
        )
        if batch == 1:
            # Nothing to fold: a plain depthwise convolution (and, in a fixed-batch ONNX
            # graph, no Reshape nodes around it).
            return F.conv2d(
                x, kernels, self.bias, stride=self.stride, padding=self.padding, groups=channels
            )
        # Batch folded into the groups: group b*C + c only ever sees sample b, channel c,
        # so no information crosses samples.
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        if channels_last:
            # oneDNN's depthwise kernel is ~10x faster on NHWC than on NCHW on CPU, so keep
            # the folded tensor NHWC too: memory (H, W, B*C), one copy in and one out.
            folded = x.permute(2, 3, 0, 1).reshape(1, height, width, batch * channels)
            folded = folded.permute(0, 3, 1, 2)
        else:
            folded = x.reshape(1, batch * channels, height, width)
        bias = None if self.bias is None else self.bias.repeat(batch)
        out = F.conv2d(
            folded,
            kernels,
            bias,
            stride=self.stride,
            padding=self.padding,
            groups=batch * channels,
        )
        out_height, out_width = out.shape[-2:]
        if channels_last:
            out = out.permute(0, 2, 3, 1).reshape(out_height, out_width, batch, channels)
            return out.permute(2, 3, 0, 1).contiguous(memory_format=torch.channels_last)
        return out.view(batch, channels, out_height, out_width)

    def _forward_mixture(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        # Output channel c*K + k is kernel k applied to input channel c.
        bank = self.weight.transpose(0, 1).reshape(
            self.channels * self.num_kernels, 1, self.kernel_size, self.kernel_size
        )
        responses = F.conv2d(
            x, bank, stride=self.stride, padding=self.padding, groups=self.channels
        )
        batch = x.shape[0]
        responses = responses.view(batch, self.channels, self.num_kernels, *responses.shape[-2:])
        return (responses * attention.view(batch, 1, self.num_kernels, 1, 1)).sum(dim=2)

    def _forward_separate(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        out = None
        for k in range(self.num_kernels):  # a loop over the K kernels, not over the batch
            kernel = self.weight[k].view(self.channels, 1, self.kernel_size, self.kernel_size)
            response = F.conv2d(
                x, kernel, stride=self.stride, padding=self.padding, groups=self.channels
            )
            response = response * attention[:, k].view(-1, 1, 1, 1)
            out = response if out is None else out + response
        return out


class LDConv(nn.Module):
    """LDConv: dynamic depthwise k x k -> BN -> static pointwise 1x1 -> BN (-> ReLU).

    With ``dynamic=False`` the depthwise kernel is a single static one (the ablation
    "static depthwise"), everything else unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        num_kernels: int = 4,
        dynamic: bool = True,
        relu: bool = True,
        execution: str = "aggregate",
    ):
        super().__init__()
        if dynamic:
            self.depthwise = DynamicDepthwiseConv(
                in_channels, kernel_size, stride, num_kernels, execution=execution
            )
        else:
            self.depthwise = nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                kernel_size // 2,
                groups=in_channels,
                bias=False,
            )
        self.bn_depthwise = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_pointwise = nn.BatchNorm2d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_depthwise(self.depthwise(x))
        x = self.bn_pointwise(self.pointwise(x))
        return F.relu_(x) if self.relu else x


def set_ldconv_execution(model: nn.Module, execution: str) -> nn.Module:
    """Switch every dynamic depthwise convolution in ``model`` to ``execution`` (in place)."""
    if execution not in EXECUTIONS:
        raise ValueError(f"unknown LDConv execution {execution!r}; choose from {EXECUTIONS}")
    for module in model.modules():
        if isinstance(module, DynamicDepthwiseConv):
            module.execution = execution
    return model


def set_attention_temperature(model: nn.Module, temperature: float) -> None:
    """Set the softmax temperature of every kernel attention in ``model``."""
    for module in model.modules():
        if isinstance(module, KernelAttention):
            module.temperature = temperature
