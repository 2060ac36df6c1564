"""`ldnet train CONFIG [key=value ...]`: train a model described by a YAML config."""

from __future__ import annotations

import os
from pathlib import Path

from .common import CLIError


def add_config_arguments(parser) -> None:
    parser.add_argument("config", help="experiment YAML (see configs/)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=5e-4"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a config (torchrun for several processes/GPUs)",
        description=(
            "Train from a YAML config. Writes config, logs (CSV, TensorBoard), last.pt/best.pt "
            "and metrics.json into a run folder. A run folder that holds last.pt is resumed "
            "automatically. Several processes: torchrun --nproc_per_node N -m ldnet.cli train ..."
        ),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--run-dir", type=Path, help="run folder (default: a new one under output_dir)"
    )
    parser.add_argument("--resume", type=Path, help="checkpoint to resume from")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ldnet.config import load_config
    from ldnet.engine.runs import new_run_dir
    from ldnet.engine.train import train

    config = load_config(args.config, args.overrides)
    main_process = int(os.environ.get("RANK", "0")) == 0
    resume = args.resume
    if args.run_dir is not None:
        run_dir = args.run_dir
        if resume is None and (run_dir / "last.pt").exists():
            resume = run_dir / "last.pt"
    elif resume is not None:
        run_dir = resume.parent
    elif main_process:
        run_dir = new_run_dir(config.output_dir, config.name)
    else:
        raise CLIError("with several processes, give --run-dir (shared by all of them)")
    if resume is not None and not resume.exists():
        raise CLIError(f"--resume: no such checkpoint {str(resume)!r}")
    if main_process:
        print(f"run folder: {run_dir}")
    metrics = train(config, run_dir, resume, args.device, progress=not args.quiet)
    if main_process and metrics:
        from ldnet.evaluation import format_metrics_table

        print(format_metrics_table(metrics))
    return 0
