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
