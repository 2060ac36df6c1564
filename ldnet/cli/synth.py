"""`ldnet synth`: write a synthetic COCO-keypoints dataset (the demo's data) to a folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import CLIError


def count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def image_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``320x240``) -> (width, height)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"malformed image size {text!r}: expected WxH, e.g. 320x240"
        )
    return int(parts[0]), int(parts[1])


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic COCO-format keypoint dataset",
        description=(
            "Articulated figures with the 17 COCO keypoints over random backgrounds, 1-4 to an "
            "image, written in the seed's COCO layout (annotations/, images/train2017, "
            "images/val2017, person_detection_results/) for `ldnet train` and `ldnet test`. "
            "The same seed gives the same files."
        ),
    )
    parser.add_argument("--output", type=Path, required=True, help="dataset folder to create")
    parser.add_argument("--train", type=count, default=600, help="train images (default 600)")
    parser.add_argument("--val", type=count, default=100, help="val images (default 100)")
    parser.add_argument("--seed", type=count, default=0)
    parser.add_argument(
        "--size", type=image_size, default=(320, 240), metavar="WxH", help="image size"
    )
    parser.add_argument("--preview", type=Path, help="also write a contact sheet PNG here")
    parser.add_argument(
        "--overwrite", action="store_true", help="remake an existing synthetic dataset"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ldnet.synthetic import draw_preview, generate_dataset

    if args.output.exists() and not args.output.is_dir():
        raise CLIError(f"{args.output}: exists and is not a folder")
    started = time.perf_counter()
    try:
        paths = generate_dataset(
            args.output,
            args.train,
            args.val,
            seed=args.seed,
            image_size=args.size,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as error:
        raise CLIError(str(error)) from None
    seconds = time.perf_counter() - started
    print(f"{paths.root}: {args.train} train + {args.val} val images ready ({seconds:.1f} s)")
    if args.preview is not None:
        split = "val2017" if args.val else "train2017"
        if args.train or args.val:
            print(f"preview: {draw_preview(paths.root, args.preview, split=split)}")
    return 0
