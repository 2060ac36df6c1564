"""Seeded random weights for `hrnet_w32`, the same on every machine (numpy's PCG64, in the
order of the template's keys), shared by the lineage tests and the reference checks in
`tools/`. Convolution weights have variance 1/fan-in, BatchNorm statistics are random and its
scales below one, so the heatmaps stay of order one through the four stages (He scaling with
unit BatchNorm scales grows them to about 1e9 through the residual sums), and a mix-up of two
tensors of the same shape shows in the output."""

from __future__ import annotations

import math

import numpy as np
import torch


def seeded_weights(template: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the template's keys, shapes and dtypes and seeded random values."""
    rng = np.random.Generator(np.random.PCG64(seed))
    state = {}
    for name, tensor in template.items():
        shape = tuple(tensor.shape)
        if not tensor.is_floating_point():  # num_batches_tracked
            state[name] = tensor.clone()
            continue
        if name.endswith("running_var"):
            values = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean"):
            values = rng.uniform(-0.5, 0.5, shape)
        elif len(shape) == 1 and name.endswith("weight"):  # a BatchNorm's scale
            values = rng.uniform(0.2, 0.5, shape)
        elif len(shape) == 1:  # a bias
            values = rng.uniform(-0.2, 0.2, shape)
        else:
            fan_in = math.prod(shape[1:])
            values = rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)
        state[name] = torch.from_numpy(values.astype(np.float32))
    return state


# The kernel attention's second 1x1 convolution (hidden -> K logits) of LDNet's dynamic
# convolutions, scaled so that its logits are of order 100: the official temperature T = 34
# divides them before the softmax, and logits of order one (what 1/fan-in scaling gives)
# would leave every attention near 1/4 whatever the input, so a mix-up of samples or kernels
# would hardly show. The weight part varies with the input, the bias part does not.
ATTENTION_WEIGHT_SCALE = 60.0
ATTENTION_BIAS_SCALE = 40.0


def seeded_ldnet_weights(
    template: dict[str, torch.Tensor], seed: int = 0
) -> dict[str, torch.Tensor]:
    """``seeded_weights`` for the LDNet presets: kernel banks (K, out, in, k, k) scaled by
    the fan-in of one kernel, the kernel attention spread as above (its first 1x1
    convolution keeps 1/fan-in scaling), and BatchNorm scales in [0.5, 1): LDNet is shallower
    than HRNet-W32 (2 blocks per branch), and with HRNet's [0.2, 0.5) the features of the
    deep stages, so the attention, hardly depend on the input (the samples of a batch then
    mix the same kernels); with [0.5, 1) heatmaps stay of order 10-100."""
    rng = np.random.Generator(np.random.PCG64(seed))
    state = {}
    for name, tensor in template.items():
        shape = tuple(tensor.shape)
        if not tensor.is_floating_point():  # num_batches_tracked
            state[name] = tensor.clone()
            continue
        if name.endswith("attention.fc2.weight"):
            values = rng.standard_normal(shape) * ATTENTION_WEIGHT_SCALE / math.sqrt(shape[1])
        elif name.endswith("attention.fc2.bias"):
            values = rng.standard_normal(shape) * ATTENTION_BIAS_SCALE
        elif name.endswith("running_var"):
            values = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean"):
            values = rng.uniform(-0.5, 0.5, shape)
        elif len(shape) == 1 and name.endswith("weight"):  # a BatchNorm's scale
            values = rng.uniform(0.5, 1.0, shape)
        elif len(shape) == 1:  # a bias
            values = rng.uniform(-0.2, 0.2, shape)
        else:  # a convolution, or a bank of K kernels (K, out, in, k, k): one kernel's fan-in
            fan_in = math.prod(shape[-3:])
            values = rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)
        state[name] = torch.from_numpy(values.astype(np.float32))
    return state


def ldnet_input(batch: int, seed: int, size: tuple[int, int] = (256, 192)) -> torch.Tensor:
    """A float64 crop batch for the LDNet parity checks: normal noise (as a normalised crop),
    each sample with its own contrast (x 1/4 .. 4) and channel means (+-1), so that the
    kernel attention sees each sample differently."""
    rng = np.random.Generator(np.random.PCG64(seed))
    noise = rng.standard_normal((batch, 3, *size))
    contrast = 4.0 ** rng.uniform(-1, 1, (batch, 1, 1, 1))
    means = rng.uniform(-1, 1, (batch, 3, 1, 1))
    return torch.from_numpy(noise * contrast + means)
