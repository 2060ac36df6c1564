"""Named architectures. Each is a ``NetworkSpec``; ablations are ``dataclasses.replace`` of one."""

from __future__ import annotations

from dataclasses import replace

from .parallel import StageSpec
from .posenet import HeadSpec, NetworkSpec, PoseNet, StemSpec


def _hrnet_stages(
    widths: tuple[int, ...],
    blocks: tuple[str, ...],
    first_branch_blocks: tuple[int, int, int] = (4, 4, 4),
    other_branch_blocks: int = 4,
) -> tuple[StageSpec, ...]:
    """HRNet's stages 2-4: 1/4/3 modules over 2/3/4 branches.

    HRNet has 4 blocks in every branch; ``first_branch_blocks`` (per stage) and
    ``other_branch_blocks`` let a preset spend its blocks elsewhere.
    """
    return tuple(
        StageSpec(
            modules,
            (first_branch_blocks[index],) + (other_branch_blocks,) * (index + 1),
            widths[: index + 2],
            blocks[: index + 2],
        )
        for index, modules in enumerate((1, 4, 3))
    )


HRNET_W32 = NetworkSpec(
    stem=StemSpec(kind="hrnet"),
    stages=_hrnet_stages((32, 64, 128, 256), ("basic",) * 4),
    head=HeadSpec(kind="simple"),
    fusion="hrnet",
    dynamic=False,
    description="HRNet-W32 baseline (Sun et al., CVPR 2019): BasicBlocks, HRNet stem, 1x1 head",
)

# Calibrated to the paper's -82.1 % parameters / -47.9 % MACs against HRNet-W32 (see the
# README's complexity table), and shaped by where a CPU spends its time (README "Speed"):
# * Computation stays at 1/4 resolution, in the form CPUs run fastest: dense 3x3
#   convolutions 64 channels wide (at batch 1 on the 64x48 map, ONNX Runtime runs a 64-wide
#   3x3 convolution at about its dense peak and a 48-wide one at about 80 % of it; oneDNN
#   93 % and 86 %), 2 BasicBlocks per module in stages 2-3 and 1 in stage 4, and a 3x3
#   fusion convolution in the KRM.
# * Parameters are spent in the low-resolution branches, as one wide LD block per branch
#   and module (112/224/368 channels) rather than HRNet's four narrow ones: an LDConv costs
#   a dozen small operators (kernel attention, the per-sample depthwise convolution) whatever
#   its width, so fewer, wider LD blocks buy the same parameters for a quarter of the
#   operators. Same for the stem and the KRM (one LD block each).
LDNET = NetworkSpec(
    stem=StemSpec(kind="light", width=32, out_channels=64, num_blocks=1),
    stages=_hrnet_stages(
        (64, 112, 224, 368),
        ("basic", "ld", "ld", "ld"),
        first_branch_blocks=(2, 2, 1),
        other_branch_blocks=1,
    ),
    head=HeadSpec(kind="krm", width=64, num_blocks=1, fuse_kernel=3),
    fusion="light",
    dynamic=True,
    description="LDNet: light stem, LD blocks in the parallel branches, keypoint refinement",
)

# The same design scaled down for CPU-minute budgets (the demo, quick experiments): one module
# per stage, two BasicBlocks in the 1/4 branch and one LD block in each other branch, about
# two thirds of the widths, a one-block stem and KRM. Not a model of the paper; its job is to
# learn something useful in minutes on two CPU cores.
LDNET_S = NetworkSpec(
    stem=StemSpec(kind="light", width=16, out_channels=32, num_blocks=1),
    stages=(
        StageSpec(1, (2, 1), (32, 64), ("basic", "ld")),
        StageSpec(1, (2, 1, 1), (32, 64, 128), ("basic", "ld", "ld")),
        StageSpec(1, (2, 1, 1, 1), (32, 64, 128, 224), ("basic", "ld", "ld", "ld")),
    ),
    head=HeadSpec(kind="krm", width=32, num_blocks=1),
    fusion="light",
    dynamic=True,
    description="LDNet-S: LDNet scaled down for CPU-minute budgets (demo, quick experiments)",
)

PRESETS: dict[str, NetworkSpec] = {
    "ldnet": LDNET,
    "hrnet_w32": HRNET_W32,
    # Ablations of the paper's study, each one switch away from `ldnet`.
    "ldnet_static": replace(
        LDNET, dynamic=False, description="ablation: LDNet with static depthwise kernels"
    ),
    "ldnet_no_krm": replace(
        LDNET,
        head=HeadSpec(kind="simple"),
        description="ablation: LDNet without the keypoint refinement module (1x1 head)",
    ),
    "ldnet_hrnet_stem": replace(
        LDNET,
        stem=StemSpec(kind="hrnet"),
        description="ablation: LDNet with HRNet's stem instead of the light one",
    ),
    # Not of the paper: LDNet sized for CPU minutes (the demo).
    "ldnet_s": LDNET_S,
}


def build_model(name: str, num_joints: int = 17) -> PoseNet:
    """Build the preset ``name`` for ``num_joints`` joints."""
    if name not in PRESETS:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(PRESETS)}")
    if num_joints < 1:
        raise ValueError(f"joint count must be positive, got {num_joints}")
    return PoseNet(PRESETS[name].with_joints(num_joints))
