"""Named architectures. Each is a ``NetworkSpec``; variants are ``dataclasses.replace`` of one.

``ldnet_w32`` / ``ldnet_w48`` are the official LDNet (``NBU-CVMI/LDNet``, model
``dysmallnet_spattention``) layer for layer, in the paper's figure's block order: the light
stem; stage 2 = 2 modules x 2 branches of DW blocks; stage 3 = 4 x 3 of BasicBlocks; stage 4 =
2 x 4 of LD blocks; 2 blocks per branch; widths C/2C/4C/8C; the 1x1 head and the keypoint
refinement module. The release's ``w18_*`` COCO configs swap stages 3 and 4's blocks (LD
blocks in stage 3): ``ldnet_w32_ld3`` / ``ldnet_w48_ld3``.
"""

from __future__ import annotations

from dataclasses import replace

from .parallel import StageSpec
from .posenet import HeadSpec, NetworkSpec, PoseNet, StemSpec


def _stages(
    width: int,
    blocks: tuple[str, str, str],
    modules: tuple[int, int, int],
    blocks_per_branch: int,
) -> tuple[StageSpec, ...]:
    """Stages 2-4 over 2/3/4 branches of widths C, 2C, 4C, 8C; ``blocks``: one type per stage."""
    stages = []
    for index, (kind, count) in enumerate(zip(blocks, modules, strict=True)):
        branches = index + 2
        stages.append(
            StageSpec(
                count,
                (blocks_per_branch,) * branches,
                tuple(width * 2**b for b in range(branches)),
                (kind,) * branches,
            )
        )
    return tuple(stages)


HRNET_W32 = NetworkSpec(
    stem=StemSpec(kind="hrnet"),
    stages=tuple(
        StageSpec(
            modules, (4,) * (i + 2), tuple(32 * 2**b for b in range(i + 2)), ("basic",) * (i + 2)
        )
        for i, modules in enumerate((1, 4, 3))
    ),
    head=HeadSpec(kind="simple"),
    act="relu",
    dynamic=False,
    description="HRNet-W32 baseline (Sun et al., CVPR 2019): BasicBlocks, HRNet stem, 1x1 head",
)

FIGURE_ORDER = ("dw", "basic", "ld")
RELEASE_W18_ORDER = ("dw", "ld", "basic")


def ldnet(width: int, blocks: tuple[str, str, str] = FIGURE_ORDER, description: str = ""):
    """The official LDNet of width ``width`` (32 or 48) in block order ``blocks``."""
    return NetworkSpec(
        stem=StemSpec(kind="lite", width=32),
        stages=_stages(width, blocks, modules=(2, 4, 2), blocks_per_branch=2),
        head=HeadSpec(kind="krm"),
        act="leaky_relu",
        dynamic=True,
        init="ldnet",
        description=description,
    )


LDNET_W32 = ldnet(32, description="LDNet-w32 (Xu et al., 2022), the official network")
LDNET_W48 = ldnet(48, description="LDNet-w48 (Xu et al., 2022), the official network")

# The official architecture scaled down for CPU-minute budgets (the demo, quick experiments):
# the same parts (light stem, DW / Basic / LD stages, full dynamic convolutions, the KRM) with
# one module per stage, one block per branch and half the widths. Not a model of the paper.
LDNET_S = NetworkSpec(
    stem=StemSpec(kind="lite", width=16),
    stages=_stages(16, FIGURE_ORDER, modules=(1, 1, 1), blocks_per_branch=1),
    head=HeadSpec(kind="krm"),
    act="leaky_relu",
    dynamic=True,
    init="ldnet",
    description="LDNet-S: the official LDNet scaled down for CPU minutes (demo, quick runs)",
)

PRESETS: dict[str, NetworkSpec] = {
    "ldnet": LDNET_W32,
    "ldnet_w32": LDNET_W32,
    "ldnet_w48": LDNET_W48,
    # The release's other block order (its w18_* COCO configs).
    "ldnet_w32_ld3": ldnet(
        32, RELEASE_W18_ORDER, "LDNet-w32, LD blocks in stage 3 (the release's w18_* configs)"
    ),
    "ldnet_w48_ld3": ldnet(
        48, RELEASE_W18_ORDER, "LDNet-w48, LD blocks in stage 3 (the release's w18_* order)"
    ),
    "hrnet_w32": HRNET_W32,
    # Ablations of the paper's study, each one switch away from `ldnet_w32`.
    "ldnet_w32_static": replace(
        LDNET_W32,
        dynamic=False,
        description="ablation: LDNet-w32 with static kernels in the LD blocks and the KRM",
    ),
    "ldnet_w32_no_krm": replace(
        LDNET_W32,
        head=HeadSpec(kind="simple"),
        description="ablation: LDNet-w32 without the keypoint refinement module (1x1 head)",
    ),
    "ldnet_w32_hrnet_stem": replace(
        LDNET_W32,
        stem=StemSpec(kind="hrnet"),
        description="ablation: LDNet-w32 with HRNet's stem instead of the light one",
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
