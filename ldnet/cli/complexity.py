"""`ldnet complexity`: parameters and MACs of a preset, with a per-part breakdown."""

from __future__ import annotations

import json

from .common import input_size, model_choice, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "complexity",
        help="parameters and MACs of a model, per part",
        description="Count parameters and multiply-accumulates (torch.utils.flop_counter).",
    )
    model_choice(parser, default="ldnet", help="model preset (default: ldnet)")
    parser.add_argument(
        "--input", type=input_size, default=(256, 192), metavar="HxW", help="default 256x192"
    )
    parser.add_argument("--joints", type=positive_int, default=17, metavar="N", help="default 17")
    parser.add_argument(
        "--compare",
        choices=None,
        default="hrnet_w32",
        metavar="NAME",
        help="also give ratios against this preset (default hrnet_w32; 'none' to skip)",
    )
    parser.add_argument(
        "--all", action="store_true", help="one row per preset (the README's table)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ldnet.complexity import measure
    from ldnet.models import PRESETS, build_model

    from .common import CLIError

    if args.compare not in (*PRESETS, "none"):
        raise CLIError(
            f"unknown --compare model {args.compare!r}; choose from {', '.join(PRESETS)}, none"
        )
    if args.all:
        return _print_all_presets(args)
    result = measure(build_model(args.model, args.joints), args.input)
    report = {"model": args.model, "input": list(args.input), "joints": args.joints}
    report |= result.to_dict()
    if args.compare != "none":
        reference = measure(build_model(args.compare, args.joints), args.input)
        report["reference"] = {
            "model": args.compare,
            "params": reference.params,
            "macs": reference.macs,
            "params_ratio": result.params / reference.params,
            "macs_ratio": result.macs / reference.macs,
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    height, width = args.input
    print(f"{args.model}  input {height}x{width}  joints {args.joints}")
    print(f"{'part':<10} {'params':>12} {'GMACs':>9}")
    for part in result.parts:
        print(f"{part.name:<10} {part.params:>12,} {part.macs / 1e9:>9.3f}")
    print(f"{'total':<10} {result.params:>12,} {result.macs / 1e9:>9.3f}")
    if args.compare != "none":
        ref = report["reference"]
        print(
            f"vs {ref['model']}: {ref['params']:,} params, {ref['macs'] / 1e9:.3f} GMACs -> "
            f"params x{ref['params_ratio']:.3f}, MACs x{ref['macs_ratio']:.3f}"
        )
    return 0


def _print_all_presets(args) -> int:
    from ldnet.complexity import measure
    from ldnet.models import PRESETS, build_model

    costs = {name: measure(build_model(name, args.joints), args.input) for name in PRESETS}
    reference = costs.get(args.compare)
    if args.json:
        rows = [
            {"model": name, "params": cost.params, "macs": cost.macs}
            for name, cost in costs.items()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    height, width = args.input
    print(f"input {height}x{width}, {args.joints} joints")
    print(f"{'model':<18} {'params':>12} {'GMACs':>7} {'params x':>9} {'MACs x':>7}  description")
    for name, cost in costs.items():
        ratios = ""
        if reference is not None:
            ratios = f"{cost.params / reference.params:>9.3f} {cost.macs / reference.macs:>7.3f}"
        print(
            f"{name:<18} {cost.params:>12,} {cost.macs / 1e9:>7.3f} {ratios}  "
            f"{PRESETS[name].description}"
        )
    return 0
