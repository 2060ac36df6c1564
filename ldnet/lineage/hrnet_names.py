"""The names of HRNet-W32's tensors in the HRNet reference code (and MMPose, which keeps them)
against ours.

``hrnet_w32`` is the reference's ``PoseHighResolutionNet`` W32 tensor for tensor, in the same
order; only the module paths differ. Ours group a convolution with its BatchNorm
(``conv_bn``: ``.0`` the convolution, ``.1`` the BatchNorm) where the reference names them
side by side (``conv1`` / ``bn1``), and ours nest stages, transitions and the head under
``stem``, ``stages.N`` and ``head``. The rules below are the whole translation; every name is
checked for shape when the weights are loaded.
"""

from __future__ import annotations

import torch

from ldnet.checkpoint import CheckpointError

from .name_rules import PARALLEL_BODY_RULES, NameRules, output_channels

# (our name, the reference's name): regular expression and replacement, tried in order.
# Stage index s of ours is the reference's transition{s+1} and stage{s+2}; that arithmetic is
# done in ``official_name``, so the templates carry {transition} and {stage}.
STEM_RULES: tuple[tuple[str, str], ...] = (
    # Stem: conv1/bn1 and conv2/bn2 side by side in the reference.
    (r"stem\.conv([12])\.0\.(.+)", r"conv\1.\2"),
    (r"stem\.conv([12])\.1\.(.+)", r"bn\1.\2"),
    # layer1: four Bottlenecks; the first has the 64 -> 256 shortcut (downsample.0 / .1).
    (r"stem\.layer1\.(\d+)\.conv([123])\.0\.(.+)", r"layer1.\1.conv\2.\3"),
    (r"stem\.layer1\.(\d+)\.conv([123])\.1\.(.+)", r"layer1.\1.bn\2.\3"),
    (r"stem\.layer1\.(\d+)\.downsample\.([01])\.(.+)", r"layer1.\1.downsample.\2.\3"),
)

RULES = STEM_RULES + PARALLEL_BODY_RULES
_RULES = NameRules(RULES, "HRNet")
official_name, name_map = _RULES.official_name, _RULES.name_map

# Which tensor tells the width: the 1/4 branch's transition out of the 256-channel stem.
WIDTH_TENSOR = "transition1.0.0.weight"
FINAL_LAYER = "final_layer.weight"


def width_of(state: dict[str, torch.Tensor]) -> int | None:
    """HRNet's width (32 for W32, 48 for W48): the channels of the 1/4 branch."""
    return output_channels(state, WIDTH_TENSOR)


def joints_of(state: dict[str, torch.Tensor]) -> int | None:
    """The joint count: the output channels of the final 1x1 convolution."""
    return output_channels(state, FINAL_LAYER)


def to_ours(
    official: dict[str, torch.Tensor], template: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """``official`` (reference names) as a state dict of ours, with every tensor of
    ``template`` (our model's state dict) present and of the same shape, and nothing left
    over. ``num_batches_tracked`` (a training counter, absent from files saved before
    PyTorch 0.4.1) is taken from the template where the file lacks it."""
    mapping = name_map(template)
    state, missing, mismatched = {}, [], []
    for ours, theirs in mapping.items():
        if theirs not in official:
            if ours.endswith("num_batches_tracked"):
                state[ours] = template[ours].clone()
            else:
                missing.append(theirs)
            continue
        tensor = official[theirs]
        if tuple(tensor.shape) != tuple(template[ours].shape):
            mismatched.append(
                f"{theirs} is {_shape(tensor)}, hrnet_w32's {ours} is {_shape(template[ours])}"
            )
            continue
        state[ours] = tensor.to(template[ours].dtype)
    left_over = sorted(set(official) - set(mapping.values()))
    if mismatched:
        raise CheckpointError(
            f"{source}: {len(mismatched)} tensor(s) of another shape, first: {mismatched[0]}"
        )
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} tensor(s) of HRNet-W32 missing, first: {missing[0]}"
        )
    if left_over:
        raise CheckpointError(
            f"{source}: {len(left_over)} tensor(s) that HRNet-W32 does not have, first: "
            f"{left_over[0]}"
        )
    return state


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(size) for size in tensor.shape) or "a scalar"
