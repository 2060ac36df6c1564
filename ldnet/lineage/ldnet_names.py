"""The names of LDNet's tensors in the official code (``NBU-CVMI/LDNet``, model
``dysmallnet_spattention``) against ours.

``ldnet_w32`` / ``ldnet_w48`` (and the ``_ld3`` block order) are the official network tensor
for tensor; only the module paths differ. Ours group a convolution with its BatchNorm
(``.0`` the convolution, ``.1`` the BatchNorm, also for a dynamic convolution, whose
``attention.fc1`` / ``attention.fc2`` and kernel bank ``weight`` keep the official names
beneath it); the official code names them side by side (``conv1`` / ``bn1``). Transitions and
fusion are HRNet's on both sides. The rules below are the whole translation; every tensor is
checked for shape when weights are loaded.
"""

from __future__ import annotations

import torch

from ldnet.checkpoint import CheckpointError

from .name_rules import PARALLEL_BODY_RULES, NameRules, output_channels

# (our name, the official name): regular expression and replacement, tried in order. Stage
# index s of ours is the official transition{s+1} and stage{s+2}; ``official_name`` does that
# arithmetic, so the templates carry {transition} and {stage}.
STEM_RULES: tuple[tuple[str, str], ...] = (
    # The light stem: conv1/bn1; half A is the official `branch1` Sequential (dw conv, BN,
    # 1x1 conv, BN, LeakyReLU: indices 0-3); half B is expand_conv/bn2, depthwise_conv/bn3,
    # linear_conv/bn4.
    (r"stem\.conv1\.0\.(.+)", r"stem.conv1.\1"),
    (r"stem\.conv1\.1\.(.+)", r"stem.bn1.\1"),
    (r"stem\.half_a\.0\.([01])\.(.+)", r"stem.branch1.\1.\2"),
    (r"stem\.half_a\.1\.0\.(.+)", r"stem.branch1.2.\1"),
    (r"stem\.half_a\.1\.1\.(.+)", r"stem.branch1.3.\1"),
    (r"stem\.half_b\.0\.0\.(.+)", r"stem.expand_conv.\1"),
    (r"stem\.half_b\.0\.1\.(.+)", r"stem.bn2.\1"),
    (r"stem\.half_b\.1\.0\.(.+)", r"stem.depthwise_conv.\1"),
    (r"stem\.half_b\.1\.1\.(.+)", r"stem.bn3.\1"),
    (r"stem\.half_b\.2\.0\.(.+)", r"stem.linear_conv.\1"),
    (r"stem\.half_b\.2\.1\.(.+)", r"stem.bn4.\1"),
)
# The refinement module (`prm`: conv1/bn1 static 3x3, conv_2_1/bn_2_1 dynamic 1x1,
# conv_2_2/bn_2_2 dynamic 9x9).
KRM_RULES: tuple[tuple[str, str], ...] = (
    (r"head\.krm\.conv1\.0\.(.+)", r"prm.conv1.\1"),
    (r"head\.krm\.conv1\.1\.(.+)", r"prm.bn1.\1"),
    (r"head\.krm\.conv2\.0\.(.+)", r"prm.conv_2_1.\1"),
    (r"head\.krm\.conv2\.1\.(.+)", r"prm.bn_2_1.\1"),
    (r"head\.krm\.conv3\.0\.(.+)", r"prm.conv_2_2.\1"),
    (r"head\.krm\.conv3\.1\.(.+)", r"prm.bn_2_2.\1"),
)
RULES = STEM_RULES + PARALLEL_BODY_RULES + KRM_RULES
_RULES = NameRules(RULES, "official LDNet")
official_name, name_map = _RULES.official_name, _RULES.name_map

# Tensors that tell an official LDNet file from HRNet's (its light stem, its refinement
# module; either is enough: a file missing the other is then reported as incomplete), its
# width (the stage-2 1/4 branch's first DW block: C x 1 x 3 x 3) and its block order (where
# the kernel banks are: stage 3 in the release's w18_* configs, stage 4 in the figure's).
MARKERS = ("stem.conv1.weight", "prm.conv1.weight")
WIDTH_TENSOR = "stage2.0.branches.0.0.conv1.weight"
FINAL_LAYER = "final_layer.weight"
LD_BLOCK_TENSOR = "{stage}.0.branches.0.0.conv1.weight"  # 5-D (K, out, in, k, k) in LD blocks
# Our presets that are the official network, by (width, stage holding the LD blocks).
PRESETS = {
    (32, "stage4"): "ldnet_w32",
    (48, "stage4"): "ldnet_w48",
    (32, "stage3"): "ldnet_w32_ld3",
    (48, "stage3"): "ldnet_w48_ld3",
}
ORDERS = {"stage4": "the figure's block order", "stage3": "LD blocks in stage 3"}


def takes_official_names(our_names) -> bool:
    """Whether every tensor of a network of ours has an official LDNet name."""
    try:
        name_map(our_names)
    except KeyError:
        return False
    return True


def is_official_ldnet(state) -> bool:
    """Whether a state dict (``module.`` prefix removed) is in the official LDNet's names:
    one of the markers, and none of our own module paths."""
    return any(name in state for name in MARKERS) and not any(
        name.startswith("stages.") for name in state
    )


def width_of(state) -> int | None:
    """LDNet's width C (32 or 48): the channels of the stage-2 1/4 branch."""
    return output_channels(state, WIDTH_TENSOR)


def ld_stage_of(state) -> str | None:
    """The official stage holding the LD blocks ("stage3" or "stage4"), from the kernel banks."""
    found = [
        stage
        for stage in ("stage3", "stage4")
        if getattr(state.get(LD_BLOCK_TENSOR.format(stage=stage)), "ndim", 0) == 5
    ]
    return found[0] if len(found) == 1 else None


def joints_of(state) -> int | None:
    """The joint count: the output channels of the 1x1 heatmap convolution."""
    return output_channels(state, FINAL_LAYER)


def preset_of(state) -> str | None:
    """Our preset that is the network of an official file, where its width and block order
    say (None when they name none)."""
    return PRESETS.get((width_of(state), ld_stage_of(state)))


def describe(state) -> str:
    """What the file's tensors say it is, in words (for error messages)."""
    width, stage = width_of(state), ld_stage_of(state)
    if width is None or stage is None:
        return "an LDNet of unknown width or block order"
    return f"LDNet-w{width}, {ORDERS[stage]}"


def to_ours(
    official: dict[str, torch.Tensor],
    template: dict[str, torch.Tensor],
    source: str,
    model: str,
    what: str = "an official LDNet checkpoint",
) -> dict[str, torch.Tensor]:
    """``official`` (the official names) as a state dict of ours, with every tensor of
    ``template`` (preset ``model``'s state dict) present and of the same shape, and nothing
    left over; else one line naming the first tensor of the file that does not fit (in the
    file's order; then the first one the file lacks) and what the file holds instead.
    ``num_batches_tracked`` (a training counter) is taken from the template where the file
    lacks it."""
    theirs_to_ours = {theirs: ours for ours, theirs in name_map(template).items()}
    problems = []
    for theirs, tensor in official.items():
        ours = theirs_to_ours.get(theirs)
        if ours is None:
            problems.append(f"{theirs} ({_shape(tensor)}), which {model} does not have")
        elif tuple(tensor.shape) != tuple(template[ours].shape):
            problems.append(
                f"{theirs} is {_shape(tensor)}, {model}'s {ours} is {_shape(template[ours])}"
            )
    state = {}
    for theirs, ours in theirs_to_ours.items():
        if theirs in official:
            state[ours] = official[theirs].to(template[ours].dtype)
        elif ours.endswith("num_batches_tracked"):
            state[ours] = template[ours].clone()
        else:
            problems.append(f"{theirs} ({_shape(template[ours])} in {model}) is missing")
    if problems:
        found = describe(official)
        fits = preset_of(official)
        hint = f" (--model {fits})" if fits is not None and fits != model else ""
        raise CheckpointError(
            f"{source}: {what} that does not fit {model}: {len(problems)} tensor(s), first: "
            f"{problems[0]}; the file holds {found}{hint}"
        )
    return state


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(size) for size in tensor.shape) or "a scalar"
