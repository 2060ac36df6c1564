"""`ldnet bench`: CPU forward throughput of models side by side (`ldnet bench data`: the
training data pipeline)."""

from __future__ import annotations

import json

import torch

from ldnet.bench.models import BENCH_BACKENDS, PEAK_MODEL
from ldnet.models.ldconv import EXECUTIONS

from .common import CLIError, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="forward throughput (images/s) of ldnet vs hrnet_w32, PyTorch vs ONNX Runtime; "
        "`bench data` for the data path",
        description=(
            "Time forward passes of several presets on several backends side by side: "
            "interleaved rounds, median per case, ratio to the reference model (same backend) "
            "and to PyTorch (same model). Models are timed as deployed: eval mode, BatchNorm "
            "folded into convolutions; PyTorch eager in channels-last memory, ONNX Runtime on "
            "fixed-batch graphs as `PoseEstimator` runs them (`onnxruntime-dynamic`: the "
            "`ldnet export onnx` file), same thread count. GMAC/s per case; --peak adds the "
            "machine's dense 3x3 convolution in the same rounds. Several backends run one after "
            "the other, each in a process of its own."
        ),
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["ldnet", "hrnet_w32"],
        metavar="NAME",
        help="presets to time (default: ldnet hrnet_w32)",
    )
    parser.add_argument(
        "--batch", nargs="+", type=positive_int, default=[1, 8], metavar="N", help="default 1 8"
    )
    from .common import input_size

    parser.add_argument("--input", type=input_size, default=(256, 192), metavar="HxW")
    parser.add_argument("--joints", type=positive_int, default=17, metavar="N")
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed rounds (median)")
    parser.add_argument(
        "--min-repeat-s",
        type=float,
        default=0.3,
        help="each timed repeat runs enough calls to last at least this long",
    )
    parser.add_argument("--threads", type=positive_int, help="torch intra-op threads")
    parser.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers unfolded")
    parser.add_argument(
        "--nchw", action="store_true", help="contiguous NCHW memory instead of channels-last"
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=BENCH_BACKENDS,
        default=["pytorch", "onnxruntime"],
        help="inference backends (default: pytorch onnxruntime; openvino needs "
        "`pip install ldnet[openvino]`)",
    )
    parser.add_argument(
        "--execution",
        choices=EXECUTIONS,
        default="auto",
        help="LDConv's form in PyTorch (default auto: per layer and batch, docs/model.md); "
        "exported graphs use the export's (fixed batch aggregate, dynamic mixture)",
    )
    parser.add_argument("--reference", default="hrnet_w32", help="ratio denominator")
    parser.add_argument(
        "--peak",
        action="store_true",
        help="also time a dense 3x3 convolution (256 channels, 64x48) per backend: the "
        "machine's achievable GMAC/s, beside each model's",
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="time training steps (forward, loss, backward, Adam) instead of inference; "
        "uses the first --batch value",
    )
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="time several --backend values in this one process, rounds interleaved (default: "
        "each backend in a process of its own; in one process they slow each other)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of results")
    parser.set_defaults(run=run)
    bench_subparsers = parser.add_subparsers(dest="bench_target", metavar="TARGET")
    from .bench_serve import register_serve_bench

    register_serve_bench(bench_subparsers)
    try:
        from .data import register_data_bench
    except ImportError:  # the data pipeline benchmark lives with the data package
        return
    register_data_bench(bench_subparsers)


def run(args) -> int:
    from ldnet.models import PRESETS

    for name in args.models:
        if name not in PRESETS:
            raise CLIError(f"unknown model {name!r}; choose from {', '.join(PRESETS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if backends_apart(args):
        results = results_in_separate_processes(args)
    else:
        results = results_in_this_process(args)
    report(args, results)
    return 0


def backends_apart(args) -> bool:
    """Whether this run times its backends in processes of their own (see below)."""
    return len(args.backend) > 1 and not args.train and not args.same_process


# Several backends in one process slow each other: on a 2-core AMD EPYC `ldnet_w32`'s PyTorch
# eager ran 13.3 images/s at batch 1 beside ONNX Runtime sessions and 18.3-18.8 alone
# (docs/measurements.md, "One backend per process"). Users deploy one backend per process.
def results_in_separate_processes(args) -> list:
    """Each backend timed by ``ldnet bench --json`` in a child process, one after the other."""
    import subprocess
    import sys
    from dataclasses import fields

    from ldnet.bench.models import BenchResult

    names = {field.name for field in fields(BenchResult)}
    results = []
    for backend in args.backend:
        command = [sys.executable, "-m", "ldnet.cli", "bench", *_child_arguments(args)]
        command += ["--backend", backend, "--json"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
            said = lines[-1].removeprefix("ldnet bench: error: ")
            raise CLIError(f"--backend {backend}: {said}")
        for row in json.loads(done.stdout):
            results.append(BenchResult(**{k: v for k, v in row.items() if k in names}))
    return results


def _child_arguments(args) -> list[str]:
    """The options of this run that a one-backend child needs, as command-line words."""
    height, width = args.input
    words = ["--models", *args.models, "--batch", *map(str, args.batch)]
    words += ["--input", f"{height}x{width}", "--joints", str(args.joints)]
    words += ["--repeats", str(args.repeats), "--min-repeat-s", str(args.min_repeat_s)]
    words += ["--execution", args.execution]
    if args.threads:
        words += ["--threads", str(args.threads)]
    words += [flag for flag, on in (("--no-fuse", args.no_fuse), ("--nchw", args.nchw)) if on]
    return words + (["--peak"] if args.peak else [])


def results_in_this_process(args) -> list:
    from tqdm import tqdm

    from ldnet.bench.models import benchmark_forward, benchmark_training

    with tqdm(total=args.repeats, desc="bench rounds", disable=args.json, leave=False) as bar:
        if args.train:
            results = benchmark_training(
                args.models,
                args.batch[0],
                args.input,
                args.joints,
                repeats=args.repeats,
                on_round=lambda _: bar.update(1),
            )
        else:
            results = benchmark_forward(
                args.models,
                args.batch,
                args.input,
                args.joints,
                repeats=args.repeats,
                min_repeat_s=args.min_repeat_s,
                fuse=not args.no_fuse,
                channels_last=not args.nchw,
                on_round=lambda _: bar.update(1),
                backends=args.backend,
                peak=args.peak,
                execution=args.execution,
            )
    return results


def report(args, results) -> None:
    from ldnet.bench.models import backend_speedups, speedups

    ratios = speedups(results, args.reference) if args.reference in args.models else {}
    several = len({r.backend for r in results}) > 1
    ratios = {(k if several else ("", *k)): v for k, v in ratios.items()}
    vs_pytorch = backend_speedups(results) if several and "pytorch" in args.backend else {}
    if args.json:
        rows = []
        for result in results:
            row = result.to_dict()
            key = (result.backend if several else "", result.model, result.batch)
            if key in ratios:
                row[f"speedup_vs_{args.reference}"] = ratios[key]
            if (result.backend, result.model, result.batch) in vs_pytorch:
                row["speedup_vs_pytorch"] = vs_pytorch[(result.backend, result.model, result.batch)]
            rows.append(row)
        print(json.dumps(rows, indent=2))
        return
    height, width = args.input
    if args.train:
        mode = "training steps (forward, loss, backward, Adam), channels-last"
    else:
        mode = (
            f"inference, {'BN folded' if not args.no_fuse else 'BN unfolded'}, "
            f"{'NCHW' if args.nchw else 'channels-last'}"
        )
    apart = backends_apart(args)
    print(
        f"input {height}x{width}, {torch.get_num_threads()} threads, {mode}, "
        f"median of {args.repeats} rounds" + (", each backend in its own process" if apart else "")
    )
    forms_width = max([24, *(len(result.execution) for result in results)])
    header = (
        f"{'backend':<19} {'model':<18} {'batch':>5} {'images/s':>9} {'ms/batch':>9} {'GMAC/s':>7}"
        f" {'LDConv':<{forms_width}}"
    )
    if ratios:
        header += f" {'vs ' + args.reference:>14}"
    if vs_pytorch:
        header += f" {'vs pytorch':>11}"
    print(header)
    for result in results:
        rate = "" if result.model == PEAK_MODEL else f"{result.images_per_s:.1f}"
        # Training rows carry no MAC count (a backward pass's is not the forward's x 2 for
        # every layer): "-" rather than a rate of 0.
        gmacs = "-" if result.gmac_per_s is None else f"{result.gmac_per_s:.1f}"
        line = (
            f"{result.backend:<19} {result.model:<18} {result.batch:>5} "
            f"{rate:>9} {result.ms_per_batch:>9.1f} {gmacs:>7} {result.execution:<{forms_width}}"
        )
        key = (result.backend if several else "", result.model, result.batch)
        if ratios:
            line += f" {ratios[key]:>13.2f}x" if key in ratios else " " * 15
        if (result.backend, result.model, result.batch) in vs_pytorch:
            line += f" {vs_pytorch[(result.backend, result.model, result.batch)]:>10.2f}x"
        print(line)
