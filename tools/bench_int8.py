"""int8 against float ONNX Runtime speed of exported files, interleaved in one process.

    python tools/bench_int8.py FLOAT.onnx INT8.onnx [CHECKPOINT.pt] [--batch 1 8]
        [--threads 2] [--rounds 15]

Each round times a burst of calls (at least 0.3 s) of every file at every batch size, in turn,
so the load the rest of the machine puts on it falls on all alike; the medians over the rounds
are compared. Every
file runs as ``ldnet predict --backend onnxruntime`` runs it: an ``.onnx`` file as it is (one
dynamic-batch graph), a ``.pt`` checkpoint as fixed-batch graphs made from it (LDConv's per-sample
kernels mixed in the graph, the "aggregate" execution).
"""

from __future__ import annotations

import argparse
import functools
import statistics

import numpy as np

from ldnet.bench.timing import calls_per_burst, settled_seconds_per_call
from ldnet.deploy.export import read_metadata
from ldnet.predict.estimator import PoseEstimator

BURST_S = 0.3  # one timed repeat lasts at least this long (as in `ldnet bench`)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="+", help=".onnx files or .pt checkpoints; the first is the reference"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (median)")
    args = parser.parse_args()

    estimators = {
        path: PoseEstimator.from_weights(path, backend="onnxruntime", threads=args.threads)
        for path in args.files
    }
    height, width = estimators[args.files[0]].record.input_size
    networks = {path: estimator.backend for path, estimator in estimators.items()}
    inputs = {
        batch: np.random.default_rng(0).standard_normal((batch, 3, height, width), np.float32)
        for batch in args.batch
    }
    bursts = {}
    for path, network in networks.items():  # first calls make graphs, set kernels up; not timed
        for batch, images in inputs.items():
            network(images)
            bursts[path, batch] = calls_per_burst(functools.partial(network, images), BURST_S)
    seconds = {(path, batch): [] for path in networks for batch in args.batch}
    for _ in range(args.rounds):
        for batch, images in inputs.items():
            for path, network in networks.items():
                run = functools.partial(network, images)
                seconds[path, batch].append(settled_seconds_per_call(run, bursts[path, batch]))
    reference = args.files[0]
    print(f"input {height}x{width}, {args.threads} threads, median of {args.rounds} rounds")
    for batch in args.batch:
        base = statistics.median(seconds[reference, batch])
        for path in args.files:
            median = statistics.median(seconds[path, batch])
            precision = (
                read_metadata(path).get("precision", "float32")
                if path.endswith(".onnx")
                else "float32, fixed-batch graphs"
            )
            print(
                f"batch {batch}: {path} ({precision}): {batch / median:.1f} images/s, "
                f"{base / median:.2f}x the first"
            )


if __name__ == "__main__":
    main()
