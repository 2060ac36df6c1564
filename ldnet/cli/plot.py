"""`ldnet plot RUN_DIR`: training curves (loss, lr, validation metric) to a PNG."""

from __future__ import annotations

import csv
from pathlib import Path

from ldnet.errors import require_extra
from ldnet.files import atomic_path

from .common import CLIError


def register(subparsers) -> None:
    parser = subparsers.add_parser("plot", help="training curves of a run to a PNG")
    parser.add_argument("run_dir", type=Path, help="a run folder holding log.csv")
    parser.add_argument("--output", type=Path, help="PNG path (default RUN_DIR/curves.png)")
    parser.set_defaults(run=run)


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    train = [r for r in rows if r.get("loss")]
    val = [r for r in rows if r.get("metric")]
    return train, val


def run(args) -> int:
    require_extra("plot", "ldnet plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = args.run_dir / "log.csv"
    if not log.is_file():
        raise CLIError(f"{args.run_dir}: no log.csv (is it a training run folder?)")
    try:
        train, val = read_log(log)
    except (csv.Error, UnicodeDecodeError) as error:
        raise CLIError(f"{log}: not a readable CSV log ({error})") from None
    if not train:
        raise CLIError(f"{log}: holds no training steps yet")
    output = args.output or args.run_dir / "curves.png"
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    iterations = [int(r["iteration"]) for r in train]
    axes[0].plot(iterations, [float(r["loss"]) for r in train])
    axes[0].set(title="training loss", xlabel="iteration", yscale="log")
    axes[1].plot(iterations, [float(r["lr"]) for r in train])
    axes[1].set(title="learning rate", xlabel="iteration")
    if val:
        axes[2].plot([int(r["epoch"]) for r in val], [float(r["metric"]) for r in val], "o-")
        axes[2].set(title=f"validation {val[0]['metric_name']}", xlabel="epoch")
    else:
        axes[2].set(title="no validation yet")
    figure.tight_layout()
    try:
        with atomic_path(output) as temporary:
            figure.savefig(temporary, dpi=100, format="png")  # PNG whatever the name says
    finally:
        plt.close(figure)
    print(f"wrote {output}")
    return 0
