"""The one timing harness of every benchmark: mean seconds of a burst of calls, the device's
queue drained before and after (a CUDA call returns before its kernels have run)."""

from __future__ import annotations

import time
from collections.abc import Callable


def _nothing() -> None:
    return None


def seconds_per_call(
    run: Callable[[], object], iterations: int, synchronize: Callable[[], None] = _nothing
) -> float:
    """Mean seconds of ``iterations`` calls of ``run``; ``synchronize`` drains the device
    before the clock starts and before it stops (nothing to drain on the CPU)."""
    synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    synchronize()
    return (time.perf_counter() - start) / iterations


def calls_per_burst(
    run: Callable[[], object], min_seconds: float, synchronize: Callable[[], None] = _nothing
) -> int:
    """How many calls of ``run`` make a timed burst last at least ``min_seconds`` (one call
    timed to find out), so that the clock's resolution and each burst's first call weigh
    little."""
    return max(1, round(min_seconds / max(seconds_per_call(run, 1, synchronize), 1e-6)))


def settled_seconds_per_call(
    run: Callable[[], object], iterations: int, synchronize: Callable[[], None] = _nothing
) -> float:
    """``seconds_per_call`` after one untimed call: when cases take turns, the previous
    case's ONNX Runtime worker threads spin on for a while after its last call (its default,
    for short gaps between operators) and take the cores from this case's first call; on 2
    cores that cost a batch-1 LDNet graph up to 2x when every call was a turn."""
    run()
    return seconds_per_call(run, iterations, synchronize)
