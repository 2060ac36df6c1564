"""ONNX Runtime with and without the blocked per-sample convolutions, interleaved in one
process.

    python tools/bench_nchwc.py [--models ldnet_w32] [--batch 1 8] [--input 256x192]
        [--threads 2] [--rounds 20]

Each preset (random weights) is exported as the fixed-batch graph `PoseEstimator` makes for
each batch size and opened twice: as it is, and with LDConv's per-sample convolutions on ONNX
Runtime's blocked kernels (ldnet/deploy/nchwc.py). Each round times a burst of calls (at
least 0.3 s) of both, in turn, so the load the rest of the machine puts on it falls on both
alike; the medians over the rounds are compared.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile

import numpy as np

BURST_S = 0.3  # one timed repeat lasts at least this long (as in `ldnet bench`)


def main() -> None:
    from ldnet.bench.timing import calls_per_burst, settled_seconds_per_call
    from ldnet.deploy.export import INPUT_NAME
    from ldnet.inference.backends import export_fixed_batch, onnx_session
    from ldnet.models import build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ldnet_w32"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--input", default="256x192", help="HxW")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (median)")
    args = parser.parse_args()
    input_size = tuple(int(value) for value in args.input.split("x"))

    print(f"input {args.input}, {args.threads} threads, median of {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="ldnet-nchwc-") as folder:
        for name in args.models:
            model = build_model(name)
            for batch in args.batch:
                path = export_fixed_batch(model, batch, input_size, folder)
                sessions = {
                    "plain": onnx_session(path, args.threads, blocked=False),
                    "blocked": onnx_session(path, args.threads),
                }
                images = np.random.default_rng(0).standard_normal(
                    (batch, 3, *input_size), np.float32
                )
                feed = {INPUT_NAME: images}
                runs = {
                    label: functools.partial(session.run, None, feed)
                    for label, session in sessions.items()
                }
                bursts = {}
                for label, run in runs.items():  # the first call sets kernels up; not timed
                    run()
                    bursts[label] = calls_per_burst(run, BURST_S)
                seconds = {label: [] for label in sessions}
                for _ in range(args.rounds):
                    for label, run in runs.items():
                        seconds[label].append(settled_seconds_per_call(run, bursts[label]))
                plain, blocked = (statistics.median(seconds[label]) for label in sessions)
                count = sessions["blocked"].blocked_convs
                print(
                    f"{name}, batch {batch}: plain {plain * 1e3:.1f} ms, {count} convolutions "
                    f"blocked {blocked * 1e3:.1f} ms: {plain / blocked:.2f}x"
                )


if __name__ == "__main__":
    main()
