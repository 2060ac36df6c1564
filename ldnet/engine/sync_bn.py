"""Synchronised BatchNorm for CPU process groups (gloo).

``torch.nn.SyncBatchNorm`` runs on GPUs only. On CPU each DDP process would otherwise
normalise its share of the batch with its own statistics, so N processes would not train
the same model as one process with the same global batch. This BatchNorm all-reduces the
per-channel sum, sum of squares and count (the all-reduce is differentiable, so gradients
flow through the global statistics) and then normalises like BatchNorm2d.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole process group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum(dim=(0, 2, 3)), x.square().sum(dim=(0, 2, 3)), count])
        total = dist_fn.all_reduce(local)
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean.square()).clamp_min(0)
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 0.1
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), momentum)
            self.num_batches_tracked.add_(1)
        shape = (1, channels, 1, 1)
        scale = self.weight.view(shape) * torch.rsqrt(var.view(shape) + self.eps)
        return (x - mean.view(shape)) * scale + self.bias.view(shape)


def convert_to_cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by ``CPUSyncBatchNorm2d`` (same parameters)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = CPUSyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine
            )
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            convert_to_cpu_sync_batchnorm(child)
    return module
