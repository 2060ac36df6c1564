"""`ldnet complexity`: parameters and MACs of the presets, true and as the paper counts them."""

from __future__ import annotations

import json
import textwrap

from .common import input_size, positive_int

DEFAULT_INPUT = (256, 192)
DEFAULT_JOINTS = 17


def register(subparsers) -> None:
    from ldnet.models import PRESETS

    parser = subparsers.add_parser(
        "complexity",
        help="parameters and MACs of every preset, true and in the paper's counting",
        description=(
            "Count parameters and multiply-accumulates (MACs) of each preset for one image, in "
            "two conventions. True: every parameter, and torch.utils.flop_counter's MACs "
            "(FLOPs / 2). The paper's: HRNet's get_model_summary, which counts only modules "
            "whose class name contains 'Conv', 'BatchNorm' or 'Linear' (the official dynamic "
            "convolution, Dynamic_conv2d, is not one: its kernel banks and MACs are left out) "
            "and prints MACs / 1024**3 as 'GFLOPs'. Default: every preset at 256x192 with 17 "
            "joints, plus the paper's other settings (384x288; MPII 256x256 with 16 joints)."
        ),
    )
    parser.add_argument(
        "--model",
        nargs="+",
        choices=list(PRESETS),
        metavar="NAME",
        help=f"presets to count (default: all): {', '.join(PRESETS)}",
    )
    parser.add_argument(
        "--input",
        type=input_size,
        metavar="HxW",
        help="count at this input only (default: 256x192 and the paper's other settings)",
    )
    parser.add_argument(
        "--joints",
        type=positive_int,
        metavar="N",
        help=f"count with N joints only (default {DEFAULT_JOINTS}, 16 for the paper's MPII row)",
    )
    parser.add_argument(
        "--parts", action="store_true", help="also break each row down by part of the network"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON list of rows")
    output.add_argument(
        "--markdown", action="store_true", help="print a Markdown table (as in docs/model.md)"
    )
    parser.set_defaults(run=run)


def aliases() -> dict[str, list[str]]:
    """Preset name -> the other names of the same architecture (``ldnet`` is ``ldnet_w32``)."""
    from ldnet.models import PRESETS

    names: dict[str, list[str]] = {}
    for name, spec in PRESETS.items():
        # The longest of a spec's names is the descriptive one ("ldnet_w32", not "ldnet").
        canonical = max((n for n in PRESETS if PRESETS[n] is spec), key=len)
        if canonical != name:
            names.setdefault(canonical, []).append(name)
    return names


def settings(
    models: list[str] | None,
    size: tuple[int, int] | None,
    joints: int | None,
) -> list[tuple[str, tuple[int, int], int]]:
    """The rows to count: (preset, (H, W), joints).

    Every preset (an alias counted once, under its descriptive name) or ``models``; at
    ``size`` / ``joints`` if either is given, else at 256x192 / 17 joints, each followed by the
    paper's other settings of each chosen preset."""
    from ldnet.models import PRESETS
    from ldnet.models.complexity import PAPER_EXTRA_SETTINGS

    alias_of = {alias: name for name, others in aliases().items() for alias in others}
    chosen: list[str] = []
    for name in models or PRESETS:
        name = alias_of.get(name, name)
        if name not in chosen:
            chosen.append(name)
    if size is not None or joints is not None:
        size = size or DEFAULT_INPUT
        joints = joints or DEFAULT_JOINTS
        return [(name, size, joints) for name in chosen]
    rows = []
    for name in chosen:
        rows.append((name, DEFAULT_INPUT, DEFAULT_JOINTS))
        rows += [setting for setting in PAPER_EXTRA_SETTINGS if setting[0] == name]
    return rows


def run(args) -> int:
    from ldnet.models.complexity import rows

    counted = rows(settings(args.model, args.input, args.joints))
    if args.json:
        print(json.dumps([row.to_dict() for row in counted], indent=2))
    elif args.markdown:
        print(markdown_table(counted))
    else:
        print(text_table(counted, parts=args.parts))
    return 0


def _label(name: str) -> str:
    others = aliases().get(name)
    return f"{name} (= {', '.join(others)})" if others else name


def _size(row) -> str:
    height, width = row.input
    return f"{height}x{width}"


def _published(row) -> str:
    return "–" if row.published is None else f"{row.published[0]} / {row.published[1]}"


CONVENTIONS = (
    "Paper's convention: HRNet's get_model_summary, as the LDNet paper counts: only modules "
    "named *Conv*, *BatchNorm*, *Linear*; the dynamic convolutions (the official "
    'Dynamic_conv2d) are not counted, their kernel banks nor their MACs; "GFLOPs" = '
    "MACs / 1024^3. True: every parameter; MACs from torch.utils.flop_counter (FLOPs / 2), "
    "GMACs = MACs / 10^9. One image."
)


def text_table(counted, parts: bool = False) -> str:
    header = (
        f"{'model':<28} {'input':>7} {'joints':>6}  {'paper: params':>13} "
        f"{'GFLOPs':>7}  {'published':>13}  {'true params':>12} {'kernel banks':>12} "
        f"{'GMACs':>6}"
    )
    lines = [*textwrap.wrap(CONVENTIONS, 100), "", header, "-" * len(header)]
    for row in counted:
        paper = row.paper_convention
        lines.append(
            f"{_label(row.model):<28} {_size(row):>7} {row.joints:>6}  "
            f"{paper.params / 1e6:>11.2f} M {paper.gflops:>7.2f}  {_published(row):>13}  "
            f"{row.true.params:>12,} {row.true.bank_params:>12,} {row.true.macs / 1e9:>6.2f}"
        )
    lines += _abstract_note(counted)
    if parts:
        for row in counted:
            lines += ["", f"{_label(row.model)}, {_size(row)}, {row.joints} joints, per part"]
            lines.append(
                f"  {'part':<10} {'paper params':>13} {'MACs':>15} {'true params':>13} {'MACs':>15}"
            )
            paper_parts = {part.name: part for part in row.paper_convention.parts}
            for part in row.true.parts:
                paper = paper_parts.get(part.name)
                paper_params, paper_macs = (paper.params, paper.macs) if paper else (0, 0)
                lines.append(
                    f"  {part.name:<10} {paper_params:>13,} {paper_macs:>15,} "
                    f"{part.params:>13,} {part.macs:>15,}"
                )
            lines.append(
                f"  {'total':<10} {row.paper_convention.params:>13,} "
                f"{row.paper_convention.macs:>15,} {row.true.params:>13,} {row.true.macs:>15,}"
            )
    return "\n".join(lines)


def _find(counted, model: str, size: tuple[int, int], joints: int = DEFAULT_JOINTS):
    return next((r for r in counted if (r.model, r.input, r.joints) == (model, size, joints)), None)


def _abstract_note(counted) -> list[str]:
    """Where the abstract's "-82.1 % parameters, -47.9 % computation" come from, and the
    same comparison in true counts, when the rows needed are there."""
    hrnet = _find(counted, "hrnet_w32", (256, 192))
    ldnet_384 = _find(counted, "ldnet_w32", (384, 288))
    ldnet_256 = _find(counted, "ldnet_w32", (256, 192))
    lines = []
    if hrnet and ldnet_384:
        params = ldnet_384.paper_convention.params / hrnet.paper_convention.params - 1
        gflops = ldnet_384.paper_convention.gflops / hrnet.paper_convention.gflops - 1
        lines.append(
            "The abstract's -82.1 % parameters / -47.9 % computation are LDNet-w32 at 384x288 "
            f"against HRNet-W32 at 256x192 in the paper's convention: {params:.1%} / "
            f"{gflops:.1%} (-82.1 % from the rounded 5.1 M and 28.5 M)."
        )
    if hrnet and ldnet_256:
        lines.append(
            "True counts at the same input (256x192): LDNet-w32 has "
            f"{ldnet_256.true.params / hrnet.true.params:.3f}x HRNet-W32's parameters and "
            f"{ldnet_256.true.macs / hrnet.true.macs:.3f}x its MACs."
        )
    if any(row.published for row in counted):
        lines.append(
            "The paper's one-decimal GFLOPs are the paper's convention truncated, not rounded "
            "(1.65 -> 1.6, 2.20 -> 2.1)."
        )
    return ["", *(w for line in lines for w in textwrap.wrap(line, 100))] if lines else []


def _markdown_label(name: str) -> str:
    others = aliases().get(name)
    return f"`{name}`" + (f" (= {', '.join(f'`{o}`' for o in others)})" if others else "")


def markdown_table(counted) -> str:
    lines = [
        '| model | input | paper\'s convention: params / "GFLOPs" | paper | '
        "true params (of which kernel banks) | true GMACs |",
        "|---|---|---|---|---|---|",
    ]
    for row in counted:
        paper = f"{row.paper_convention.params / 1e6:.2f} M / {row.paper_convention.gflops:.2f}"
        size = _size(row) + ("" if row.joints == DEFAULT_JOINTS else f", {row.joints} joints")
        params = f"{row.true.params:,}"
        if row.true.bank_params:
            params += f" ({row.true.bank_params:,})"
        lines.append(
            f"| {_markdown_label(row.model)} | {size} | {paper} | {_published(row)} | "
            f"{params} | {row.true.macs / 1e9:.2f} |"
        )
    return "\n".join(lines)
