"""`ldnet bench serve`: images/s and p50/p95 latency of `ldnet serve` at several client
counts, with and without micro-batching (``ldnet.bench.serve``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ldnet.errors import require_extra

from .common import CLIError, input_size, positive_int


def register_serve_bench(bench_subparsers) -> None:
    """Add ``ldnet bench serve`` to the ``bench`` command (called by ldnet/cli/bench.py)."""
    parser = bench_subparsers.add_parser(
        "serve",
        help="HTTP service throughput and latency, with and without micro-batching",
        description=(
            "Start `ldnet serve` on a free local port for each --max-batch value, drive the "
            "servers in interleaved rounds with closed-loop clients (each sends its next "
            "request when the last is answered), and report images/s, p50 and p95 latency "
            "per client count."
        ),
    )
    parser.add_argument(
        "--weights", type=Path, help="checkpoint or .onnx (default: random --model weights)"
    )
    parser.add_argument("--model", default="ldnet", help="preset for random weights (ldnet)")
    parser.add_argument("--input", type=input_size, default=(256, 192), metavar="HxW")
    parser.add_argument("--backend", choices=["pytorch", "onnxruntime"], default="pytorch")
    parser.add_argument("--clients", nargs="+", type=positive_int, default=[1, 4, 8], metavar="N")
    parser.add_argument(
        "--max-batch",
        nargs="+",
        type=positive_int,
        default=[8, 1],
        metavar="N",
        help="server --max-batch values to compare (default 8 1: batching on and off)",
    )
    parser.add_argument(
        "--requests",
        type=positive_int,
        default=64,
        help="requests per server and client count, over all rounds (64)",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=4, help="interleaved rounds per client count (4)"
    )
    parser.add_argument("--image", type=Path, help="image to send (default: 640x480 noise)")
    parser.add_argument("--people", type=positive_int, default=1, help="boxes per image (1)")
    parser.add_argument("--no-flip", action="store_true", help="requests ask for no flip test")
    parser.add_argument("--threads", type=positive_int, help="the server's intra-op threads")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows")
    parser.set_defaults(run=run_serve_bench)


def run_serve_bench(args) -> int:
    require_extra("serve", "ldnet bench serve")
    import tempfile

    from ldnet.bench.serve import bench_serve, random_weights
    from ldnet.models import PRESETS

    if args.weights is None and args.model not in PRESETS:
        raise CLIError(f"unknown model {args.model!r}; choose from {', '.join(PRESETS)}")
    with tempfile.TemporaryDirectory(prefix="ldnet-bench-serve-") as folder:
        weights = args.weights or random_weights(args.model, args.input, Path(folder))
        if args.weights is not None and not args.weights.exists():
            raise CLIError(f"{args.weights}: no such weights file")
        rows = bench_serve(
            weights,
            clients=args.clients,
            max_batches=args.max_batch,
            requests=args.requests,
            rounds=args.rounds,
            image=args.image,
            people=args.people,
            flip=not args.no_flip,
            server_arguments=["--backend", args.backend],
            threads=args.threads,
            progress=None if args.json else lambda text: print(text, file=sys.stderr),
        )
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=1))
        return 0
    print("| max batch | clients | images/s | p50 ms | p95 ms | requests per network call |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.max_batch} | {row.clients} | {row.images_per_s:.1f} | {row.p50_ms:.0f} "
            f"| {row.p95_ms:.0f} | {row.mean_batch:.1f} |"
            + (f" {row.busy} refused" if row.busy else "")
        )
    return 0
