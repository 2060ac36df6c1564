"""Heatmap loss of the HRNet lineage."""

from __future__ import annotations

import torch
from torch import nn


class JointsMSELoss(nn.Module):
    """0.5 x mean squared error over heatmaps, joints weighted by their target weight.

    A joint with weight 0 (unlabelled, or outside the crop) contributes nothing. This is
    HRNet's JointsMSELoss (per-joint MSE of weighted heatmaps, averaged over joints).
    """

    def forward(
        self, predicted: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        weight = target_weight.reshape(*target_weight.shape[:2], 1, 1)
        return 0.5 * ((predicted.float() - target) * weight).square().mean()


def supervised_loss(
    outputs: list[torch.Tensor],
    target: torch.Tensor,
    target_weight: torch.Tensor,
    intermediate_weight: float = 1.0,
    criterion: nn.Module | None = None,
) -> torch.Tensor:
    """Loss over every supervised heatmap: the final one, plus the KRM's intermediate
    one(s) scaled by ``intermediate_weight``."""
    criterion = criterion or JointsMSELoss()
    loss = criterion(outputs[-1], target, target_weight)
    for extra in outputs[:-1]:
        loss = loss + intermediate_weight * criterion(extra, target, target_weight)
    return loss
