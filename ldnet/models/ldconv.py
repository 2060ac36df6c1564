"""LDConv: LDNet's full dynamic convolution.

A k x k convolution (groups = 1) whose kernel is a per-sample softmax mixture of K learned
kernels (Dynamic Convolution, Chen et al., CVPR 2020; CondConv, Yang et al., NeurIPS 2019),
as the official LDNet code's ``Dynamic_conv2d`` builds it: K = 4, no bias, attention
GAP -> 1x1 conv C -> int(C/4)+1 (no bias) -> ReLU -> 1x1 conv -> K (bias) -> softmax(z / T),
T = 34 at construction.

The convolution is linear in its kernel, so several executions give the same result:

* ``"aggregate"``: mix one kernel per sample, sum_k a[b, k] * W_k, and run all samples at
  once as one grouped convolution with the batch folded into the groups (at batch 1 a plain
  convolution). One convolution's MACs per sample, plus the mixing (B x the bank's size).
* ``"patches"``: the same mixed kernels, each sample's convolution as one matrix product of
  its kernel with its k x k patches (im2col, then a batched matrix product). On tiny maps
  (a few dozen pixels, hundreds of channels) the grouped convolution spends its time
  reordering B fresh kernels; a batched matrix product reads them as they are.
* ``"mixture"``: run the K kernels as one static convolution with K x out channels and sum
  its K outputs weighted by a[b, k]. K times the MACs, but the weights are constant, so the
  graph has a fixed shape whatever the batch (what ONNX export needs for a dynamic batch).
* ``"auto"`` (the default in PyTorch): per call, what measured fastest for that shape
  (``auto_execution``). Export sets one explicitly.

The kernel bank (K, out, in, k, k) may sit in memory in either of two orders: as created
(in, k, k innermost) or, after ``ldnet.models.fuse.to_channels_last``, channels-last
(k, k, in innermost). Mixing reads it in its memory order, so the mixed kernels come out in
the same layout: channels-last kernels for channels-last feature maps, without a copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EXECUTIONS = ("aggregate", "patches", "mixture", "auto")
# What "auto" runs where (PyTorch 2.13, oneDNN, 2 threads, channels-last; ldnet bench and
# docs/measurements.md "Executions chosen by measurement"). Inference, batch > 1: the patches
# on maps of at most PATCHES_MAX_PIXELS (`ldnet_w32`'s 1/32 and 1/16 maps, 8x6 and 16x12);
# larger maps run grouped. Training: the mixture on maps of at most
# MIXTURE_MAX_PIXELS_TRAINING with at least MIXTURE_MIN_CHANNELS channels (backward through
# the per-sample convolution is slowest there: `ldnet_w32`'s step 1.28x faster at batch 16).
# Batch 1 is always one plain convolution with the mixed kernel. On CUDA (one H200,
# `make gpu-check`, docs/gpu.md) inference at batch > 1 runs the mixture; on other devices
# (unmeasured) the aggregate form.
PATCHES_MAX_PIXELS = 192
MIXTURE_MAX_PIXELS_TRAINING = 48
MIXTURE_MIN_CHANNELS = 128
# The official code's starting temperature; its `update_temperature` lowers it by 3 per call
# down to 1 (34 - 3n, so it reaches 1 after 11 calls).
INITIAL_TEMPERATURE = 34.0


def attention_width(in_channels: int, num_kernels: int) -> int:
    """Hidden width of the kernel attention: int(C/4) + 1, or K for an RGB input (official)."""
    return num_kernels if in_channels == 3 else int(in_channels * 0.25) + 1


class KernelAttention(nn.Module):
    """Per-sample softmax weights over K kernels: GAP -> 1x1 -> ReLU -> 1x1 -> softmax(z / T)."""

    def __init__(
        self, in_channels: int, num_kernels: int, temperature: float = INITIAL_TEMPERATURE
    ):
        super().__init__()
        hidden = attention_width(in_channels, num_kernels)
        self.fc1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, num_kernels, 1)
        # A plain attribute, not a buffer: the checkpoint record carries it (so that an
        # annealed model is tested with the temperature it was trained to).
        self.temperature = float(temperature)
        # Eager runs fc1/fc2 as matrix products (below); `ldnet.models.complexity` turns this
        # off so that the paper's counting, which hooks the two 1x1 convolutions, sees them.
        self.as_matrix_products = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() or not self.as_matrix_products:
            # GlobalAveragePool and 1x1 Convs, which ONNX Runtime runs on its blocked layout.
            pooled = F.adaptive_avg_pool2d(x, 1)
            logits = self.fc2(F.relu(self.fc1(pooled))).flatten(1)
        else:
            # The same arithmetic as two matrix products: 34 attentions of `ldnet_w32` are
            # 4 % of its eager forward at batch 8 less than as 1x1 convolutions (2 threads).
            pooled = x.mean(dim=(2, 3))
            hidden = F.relu(F.linear(pooled, self.fc1.weight.flatten(1)))
            logits = F.linear(hidden, self.fc2.weight.flatten(1), self.fc2.bias)
        if self.temperature != 1.0:  # fuse_for_inference folds 1/T into fc2
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)


class DynamicConv2d(nn.Module):
    """Full dynamic k x k convolution: a per-sample mixture of K kernels (LDConv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        num_kernels: int = 4,
        temperature: float = INITIAL_TEMPERATURE,
        execution: str = "auto",
    ):
        super().__init__()
        if execution not in EXECUTIONS:
            raise ValueError(f"unknown LDConv execution {execution!r}; choose from {EXECUTIONS}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.num_kernels = num_kernels
        self.execution = execution
        self.attention = KernelAttention(in_channels, num_kernels, temperature)
        self.weight = nn.Parameter(
            torch.empty(num_kernels, out_channels, in_channels, kernel_size, kernel_size)
        )
        # The official initialisation: each kernel of the bank Kaiming-uniform on its own.
        for kernel in self.weight.data:
            nn.init.kaiming_uniform_(kernel)
        # None while training; `fuse_for_inference` folds the following BatchNorm in here.
        self.bias: nn.Parameter | None = None

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, num_kernels={self.num_kernels}, execution={self.execution}"
        )

    def bank_is_channels_last(self) -> bool:
        """Whether the bank sits in memory as (K, out, k, k, in) (see the module's notes)."""
        return self.kernel_size > 1 and self.weight.permute(0, 1, 3, 4, 2).is_contiguous()

    def aggregated_kernels(self, attention: torch.Tensor) -> torch.Tensor:
        """(B, K) attention -> (B * out, in, k, k): each sample's mixed kernel, in the
        bank's memory layout (channels-last kernels from a channels-last bank)."""
        k = self.kernel_size
        if self.bank_is_channels_last() and not torch.onnx.is_in_onnx_export():
            # One matmul mixes the whole bank, read in its memory order: no copy.
            mixed = attention @ self.weight.permute(0, 1, 3, 4, 2).flatten(1)
            return mixed.view(-1, k, k, self.in_channels).permute(0, 3, 1, 2)
        mixed = attention @ self.weight.flatten(1)
        return mixed.view(-1, self.in_channels, k, k)

    def auto_execution(self, x: torch.Tensor) -> str:
        """What "auto" runs for input ``x`` (see ``PATCHES_MAX_PIXELS``)."""
        batch, channels, height, width = x.shape
        if batch == 1:
            return "aggregate"  # one plain convolution
        pixels = height * width
        if torch.is_grad_enabled() and self.weight.requires_grad:
            wide = channels >= MIXTURE_MIN_CHANNELS
            return "mixture" if wide and pixels <= MIXTURE_MAX_PIXELS_TRAINING else "aggregate"
        if x.device.type == "cuda":
            # cuDNN's dense convolutions beat its grouped per-sample ones at K x the MACs
            # (one H200, `make gpu-check`: ldnet_w32 at batch 64 1.26x eager in float32).
            return "mixture"
        # The patches rule was measured on CPUs; elsewhere the grouped convolution stays.
        tiny = self.kernel_size > 1 and pixels <= PATCHES_MAX_PIXELS and x.device.type == "cpu"
        return "patches" if tiny else "aggregate"

    def chosen_execution(self, x: torch.Tensor) -> str:
        """The execution ``forward(x)`` runs: "aggregate", "patches" or "mixture"."""
        return self.auto_execution(x) if self.execution == "auto" else self.execution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.attention(x)
        execution = self.chosen_execution(x)
        if execution == "mixture":
            return self._forward_mixture(x, attention)
        if execution == "patches":
            return self._forward_patches(x, attention)
        return self._forward_aggregate(x, attention)

    def _output_size(self, height: int, width: int) -> tuple[int, int]:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1

    def _forward_aggregate(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        kernels = self.aggregated_kernels(attention)
        if batch == 1:
            # Nothing to fold: a plain convolution with the mixed kernel.
            return F.conv2d(x, kernels, self.bias, self.stride, self.padding)
        # Batch folded into the groups: group b only ever sees sample b.
        bias = None if self.bias is None else self.bias.repeat(batch)
        nhwc = self.kernel_size > 3 or self.bank_is_channels_last()
        if torch.onnx.is_in_onnx_export() or not nhwc:
            # ONNX Runtime picks its own layouts: the plain NCHW fold, no transposes. In
            # training (a bank in its created order, NCHW kernels) the NCHW fold of 3x3
            # kernels is 3-4 % faster a step than the NHWC one.
            folded = x.reshape(1, batch * self.in_channels, height, width)
            out = F.conv2d(folded, kernels, bias, self.stride, self.padding, groups=batch)
            return out.view(batch, self.out_channels, *out.shape[-2:])
        # oneDNN's NHWC grouped kernel is the fastest form for large kernels forward and
        # backward (the KRM's 9x9: 9.0 against 27.3 ms for 16 x 17 x 32 x 24), and for 3x3
        # ones in inference when fed channels-last kernels (64x48 to 16x12 maps 1.1-1.7x),
        # whatever the input's layout. Memory (H, W, B * C): one copy in and one out.
        folded = x.permute(2, 3, 0, 1).reshape(1, height, width, batch * self.in_channels)
        out = F.conv2d(
            folded.permute(0, 3, 1, 2),
            kernels.contiguous(memory_format=torch.channels_last),
            bias,
            self.stride,
            self.padding,
            groups=batch,
        )
        out_height, out_width = out.shape[-2:]
        out = out.permute(0, 2, 3, 1).reshape(out_height, out_width, batch, -1)
        return out.permute(2, 3, 0, 1).contiguous(memory_format=torch.channels_last)

    def _forward_patches(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        k, s, p = self.kernel_size, self.stride, self.padding
        out_height, out_width = self._output_size(*x.shape[-2:])
        padded = F.pad(x, (p, p, p, p))
        # Tap (i, j) of every input channel, in the channels-last kernel's (k, k, in) order:
        # (B, k * k * in, H', W'), channels-last for a channels-last input.
        taps = [
            padded[:, :, i : i + s * (out_height - 1) + 1 : s, j : j + s * (out_width - 1) + 1 : s]
            for i in range(k)
            for j in range(k)
        ]
        patches = (
            torch.cat(taps, dim=1).permute(0, 2, 3, 1).reshape(batch, -1, k * k * self.in_channels)
        )
        kernels = self.weight.permute(0, 1, 3, 4, 2).flatten(1)  # a view for a channels-last bank
        mixed = (attention @ kernels).view(batch, self.out_channels, -1).transpose(1, 2)
        # (B, H' * W', k * k * in) @ (B, k * k * in, out): each sample its own kernel.
        out = (
            torch.bmm(patches, mixed)
            if self.bias is None
            else torch.baddbmm(self.bias, patches, mixed)
        )
        return out.view(batch, out_height, out_width, self.out_channels).permute(0, 3, 1, 2)

    def _forward_mixture(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        # Output channel i * out + o is kernel i's output channel o.
        bank = self.weight.reshape(self.num_kernels * self.out_channels, self.in_channels, k, k)
        responses = F.conv2d(x, bank, None, self.stride, self.padding)
        batch = x.shape[0]
        responses = responses.view(
            batch, self.num_kernels, self.out_channels, *responses.shape[-2:]
        )
        out = (responses * attention.view(batch, self.num_kernels, 1, 1, 1)).sum(dim=1)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


def set_ldconv_execution(model: nn.Module, execution: str) -> nn.Module:
    """Switch every dynamic convolution in ``model`` to ``execution`` (in place)."""
    if execution not in EXECUTIONS:
        raise ValueError(f"unknown LDConv execution {execution!r}; choose from {EXECUTIONS}")
    for module in model.modules():
        if isinstance(module, DynamicConv2d):
            module.execution = execution
    return model


def executions_run(model: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """How many dynamic convolutions of ``model`` run each form on ``inputs`` (one forward
    pass, in the caller's grad mode): {"aggregate": n, "patches": m, ...}, zeros left out."""
    counts = {"aggregate": 0, "patches": 0, "mixture": 0}

    def record(module: DynamicConv2d, args: tuple) -> None:
        counts[module.chosen_execution(args[0])] += 1

    hooks = [
        module.register_forward_pre_hook(record)
        for module in model.modules()
        if isinstance(module, DynamicConv2d)
    ]
    try:
        model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return {form: count for form, count in counts.items() if count}


def set_attention_temperature(model: nn.Module, temperature: float) -> None:
    """Set the softmax temperature of every kernel attention in ``model``."""
    for module in model.modules():
        if isinstance(module, KernelAttention):
            module.temperature = float(temperature)


def attention_temperature(model: nn.Module) -> float | None:
    """The temperature of ``model``'s kernel attentions (None without any; they share one)."""
    for module in model.modules():
        if isinstance(module, KernelAttention):
            return module.temperature
    return None
