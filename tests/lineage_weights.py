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
