"""`ldnet data check|show` and `ldnet bench data`: inspect the data pipeline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ldnet.datasets import DATASETS, DatasetKind, dataset_kind

from .common import CLIError, OneLineErrorParser, input_size, positive_int


def _default_split(kind: DatasetKind, training: bool) -> str:
    return kind.train_split if training else kind.val_split


def _add_source_arguments(parser: argparse.ArgumentParser, *, training: bool) -> None:
    """``--dataset`` and where its files are; ``--split`` defaults to the dataset's training
    split for commands about training samples, to its validation split otherwise."""
    parser.add_argument("--dataset", required=True, choices=list(DATASETS))
    parser.add_argument("--root", type=Path, help="dataset folder in the seed's layout")
    defaults = ", ".join(
        f"{_default_split(kind, training)} ({name})" for name, kind in DATASETS.items()
    )
    parser.add_argument("--split", help=f"split name under --root (default: {defaults})")
    parser.add_argument("--ann", type=Path, help="annotation file (overrides --root/--split)")
    parser.add_argument("--images", type=Path, help="image folder (overrides --root/--split)")
    parser.add_argument(
        "--input-size", type=input_size, metavar="HxW", help="crop size (default per dataset)"
    )
    parser.set_defaults(training_split=training)


def _files(args) -> tuple[Path, Path]:
    """(annotation file, image folder): ``--ann``/``--images``, else the seed's layout."""
    if args.ann is None or args.images is None:
        if args.root is None:
            raise CLIError("give --root (with --split) or both --ann and --images")
        kind = dataset_kind(args.dataset)
        split = args.split or _default_split(kind, args.training_split)
        ann, images = kind.layout(args.root, split)
        ann, images = args.ann or ann, args.images or images
    else:
        ann, images = args.ann, args.images
    if not Path(ann).is_file():
        raise CLIError(f"{ann}: annotation file not found")
    if not Path(images).is_dir():
        raise CLIError(f"{images}: image folder not found")
    return ann, images


def _load(args, **kwargs):
    kind = dataset_kind(args.dataset)
    size = args.input_size or kind.input_size
    return kind.read(*_files(args), input_size=size, **kwargs), size


def run_check(args) -> int:
    from ldnet.data.check import check
    from ldnet.data.codecs import build_codec

    kwargs = {"strict": args.strict}
    if args.detections is not None:
        kwargs.update(detections=args.detections, score_threshold=args.score_threshold)
    annotations, size = _load(args, **kwargs)
    codecs = [build_codec(name, size) for name in ("msra", "dark")]
    report = check(annotations, codecs, decode_images=not args.no_decode, progress=not args.json)
    if args.strict and report["problems"]:
        first = report["problems"][0]
        raise CLIError(f"{first['item']}: {first['reason']}")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['dataset']}: {report['annotation_file']}")
    if not report["has_ground_truth"]:
        print("  ground truth           none (a test split: boxes only, no metrics)")
    print(f"  images                 {report['images']}")
    print(f"  people                 {report['people']}")
    print(f"  people with keypoints  {report['people_with_keypoints']}")
    print(f"  samples (top-down)     {report['samples']}")
    print(f"  missing images         {report['missing_images']}")
    print(f"  unreadable images      {report['unreadable_images']}")
    print(f"  invalid boxes          {report['invalid_boxes']}")
    print(f"  ignored joints         {report['ignored_joints']}")
    for problem in report["problems"]:
        print(f"  problem: {problem['item']}: {problem['reason']} ({problem['action']})")
    if args.detections is not None:
        print("  (detection boxes carry no ground truth: no codec round trip)")
        return 0
    print("  codec round trip (ground truth -> encode -> decode -> image), COCOeval:")
    for name, r in report["roundtrip"].items():
        if r["ap"] is None:
            print(f"    {name:5s} no labelled people")
            continue
        print(
            f"    {name:5s} AP {r['ap']:.4f}  mean error {r['mean_error_px']:.3f} px  "
            f"max {r['max_error_px']:.2f} px  ({r['people']} people, {r['joints']} joints; "
            f"{r['joints_outside_crop']} outside the crop, AP with them "
            f"{r['ap_with_crop_loss']:.4f})"
        )
    return 0


def run_show(args) -> int:
    import cv2
    import numpy as np

    from ldnet.data.codecs import build_codec
    from ldnet.data.dataset import TopDownDataset
    from ldnet.data.transforms import AugmentConfig
    from ldnet.data.visualize import draw_sample, grid

    annotations, size = _load(args)
    annotations.records = [r for r in annotations.records if r.has_keypoints]
    if not annotations.records:
        raise CLIError(f"{annotations.annotation_file}: no people with keypoints to show")
    codec = build_codec(args.codec, size)
    data = TopDownDataset(annotations, codec, augment=AugmentConfig(), seed=args.seed)
    order = np.random.default_rng(args.seed).permutation(len(data))
    tiles = []
    for i in range(args.count):
        image, target, weight, _ = data[int(order[i % len(data)])]
        tiles.append(
            draw_sample(
                image.numpy(), target.numpy(), weight.numpy(), annotations.keypoint_set, codec
            )
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), grid(tiles, args.columns)):
        raise CLIError(f"{args.out}: cannot write the PNG")
    print(f"wrote {args.out} ({len(tiles)} augmented samples, {args.codec} targets)")
    return 0


def run_bench(args) -> int:
    from ldnet.bench import data as benchmark

    ann, images = _files(args)
    size = args.input_size or dataset_kind(args.dataset).input_size
    try:
        result = benchmark.run(
            args.dataset, ann, images, input_size=size, codec=args.codec, samples=args.samples
        )
    except ValueError as error:  # an unknown codec or dataset name
        raise CLIError(str(error)) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"data pipeline, {args.dataset} {size[0]}x{size[1]}, one worker: "
            f"{result['samples_per_s']:.1f} samples/s ({result['ms_per_sample']:.2f} ms/sample, "
            f"{result['samples']} samples)"
        )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="check datasets and codecs, draw augmented samples",
        description="Inspect the data pipeline of COCO, MPII and CrowdPose.",
    )
    commands = parser.add_subparsers(
        dest="data_command", metavar="SUBCOMMAND", required=True, parser_class=OneLineErrorParser
    )
    check = commands.add_parser(
        "check",
        help="count images/people, list problems, codec round trip with COCO AP",
        description="Read a split, report what is in it and what is broken, and run the "
        "codec round trip scored by the official COCO evaluator.",
    )
    _add_source_arguments(check, training=False)
    check.add_argument("--detections", type=Path, help="detection-results file (test boxes)")
    check.add_argument("--score-threshold", type=float, default=0.0, help="detection score cut")
    check.add_argument("--strict", action="store_true", help="make per-sample problems fatal")
    check.add_argument("--no-decode", action="store_true", help="do not decode every image")
    check.add_argument("--json", action="store_true", help="machine-readable report")
    check.set_defaults(run=run_check)

    show = commands.add_parser(
        "show",
        help="PNG grid of augmented training samples with skeleton and target heatmaps",
        description="Draw augmented training samples with their skeleton and heatmaps.",
    )
    _add_source_arguments(show, training=True)
    show.add_argument("--out", type=Path, default=Path("data_samples.png"), help="PNG path")
    show.add_argument("--count", type=positive_int, default=16, help="number of samples")
    show.add_argument("--columns", type=positive_int, default=8, help="tiles per row")
    show.add_argument("--codec", choices=["msra", "dark"], default="msra")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(run=run_show)


def register_data_bench(bench_subparsers) -> None:
    """Add ``ldnet bench data`` to the ``bench`` command (called by ldnet/cli/bench.py)."""
    parser = bench_subparsers.add_parser(
        "data",
        help="training data pipeline throughput (samples/s, one worker)",
        description="Time decode + augmentation + crop + normalisation + target encoding "
        "for one worker.",
    )
    _add_source_arguments(parser, training=True)
    parser.add_argument("--samples", type=positive_int, default=400)
    parser.add_argument("--codec", choices=["msra", "dark"], default="msra")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run_bench)
