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
    outputs: torch.Tensor | list[torch.Tensor],
    target: torch.Tensor,
    target_weight: torch.Tensor,
    criterion: nn.Module | None = None,
) -> torch.Tensor:
    """Loss of the predicted heatmaps: a tensor, or the list ``model(images, all_outputs=True)``
    returns (LDNet supervises one heatmap, the refinement module's output; every element of
    a longer list would count alike)."""
    criterion = criterion or JointsMSELoss()
    if isinstance(outputs, torch.Tensor):
        return criterion(outputs, target, target_weight)
    return sum(criterion(output, target, target_weight) for output in outputs)
