"""`ldnet demo`: the main job on synthetic data (no dataset, no GPU needed)."""

from __future__ import annotations

from pathlib import Path

from .common import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate synthetic people, train, evaluate (COCO AP) and draw predictions",
        description=(
            "End to end on a synthetic COCO-format dataset: generate, train on the CPU, test "
            "with the official COCO evaluator, print the AP table, draw predictions."
        ),
    )
    parser.add_argument(
        "--output", type=Path, default=Path("runs"), help="parent of the run folder"
    )
    parser.add_argument(
        "--epochs", type=positive_int, help="training epochs (default: the demo's recipe, 24)"
    )
    parser.add_argument("--train-images", type=positive_int, default=1200)
    parser.add_argument("--val-images", type=positive_int, default=200)
    parser.add_argument(
        "--model", default="ldnet_s", help="preset (default ldnet_s: LDNet sized for CPU minutes)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ldnet.engine.runs import new_run_dir
    from ldnet.models import PRESETS
    from ldnet.synthetic.demo import DEMO_EPOCHS, run_demo

    from .common import CLIError

    if args.model not in PRESETS:
        raise CLIError(f"unknown model {args.model!r}; choose from {', '.join(PRESETS)}")
    run_dir = new_run_dir(args.output, "demo")
    run_demo(
        run_dir,
        epochs=args.epochs or DEMO_EPOCHS,
        num_train=args.train_images,
        num_val=args.val_images,
        model=args.model,
        seed=args.seed,
        progress=not args.quiet,
    )
    return 0
