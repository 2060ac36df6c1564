"""One training step, in two halves: the engine checks the loss between them (all-reduced,
finite), and the benchmarks time both halves together, so every figure of a training step is
the step ``ldnet train`` runs."""

from __future__ import annotations

import torch
from torch import nn

from .loss import supervised_loss


def forward_loss(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, amp: bool
) -> torch.Tensor:
    """The heatmap loss over every supervised output, the forward pass under autocast when
    ``amp`` (the loss itself in float32)."""
    with torch.autocast(images.device.type, enabled=amp):
        outputs = model(images, all_outputs=True)
    return supervised_loss(outputs, target, weight)


def apply_gradients(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> None:
    """Backward through the (scaled) loss and one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
