"""Micro-batching: requests that arrive within a few milliseconds of each other run as one
network call, on one worker thread.

A request's handler puts its job on a bounded queue and awaits a future. The worker takes
the first job, then keeps taking jobs until ``max_batch`` are gathered or ``max_wait_s`` has
passed since the first (waiting only while more requests are known to be on their way),
runs them all with one ``run_batch`` call, and resolves each future with its own result.
While a batch runs, new requests queue up, so under load batches fill without any wait.
One worker owns the network, so the backend never runs two calls at once and the CPU
threads are not split between competing calls. The queue bound is the
backpressure: when it is full, ``submit`` refuses at once instead of growing a backlog.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ldnet.serve")


class QueueFull(Exception):
    """The batcher holds ``max_queue`` waiting jobs already."""


@dataclass
class BatchStats:
    """How the worker has batched so far (for the log and the tests)."""

    batches: int = 0
    jobs: int = 0
    largest: int = 0

    def record(self, size: int) -> None:
        self.batches += 1
        self.jobs += size
        self.largest = max(self.largest, size)


_STOP = object()


class MicroBatcher:
    """Gathers jobs into batches for ``run_batch(jobs) -> results`` (one result per job,
    in order) on a single worker thread."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        max_queue: int = 32,
        coming: Callable[[], int] = lambda: 1,
    ):
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.run_batch = run_batch
        self.coming = coming
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.stats = BatchStats()
        self.worker = threading.Thread(target=self._work, name="ldnet-batcher", daemon=True)
        self.worker.start()

    def submit(self, job) -> Future:
        """Queue ``job``; raise ``QueueFull`` at once when the queue is at its bound."""
        future: Future = Future()
        try:
            self.jobs.put_nowait((job, future))
        except queue.Full:
            raise QueueFull from None
        return future

    async def run(self, job):
        """``submit`` and await the result on the caller's event loop."""
        return await asyncio.wrap_future(self.submit(job))

    @property
    def waiting(self) -> int:
        return self.jobs.qsize()

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the jobs already queued, then stop the worker."""
        self.jobs.put(_STOP)  # blocks only while the queue is full: the worker drains it
        self.worker.join(timeout_s)

    def _gather(self, first) -> tuple[list, bool]:
        """``first`` and what joins it: everything already queued, then, while requests
        are on their way (``coming()``: accepted but still decoding), what arrives before
        the deadline. A lone request does not wait for company that is not coming."""
        batch, stopping = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self.jobs.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.coming() == 0:
                    break
                try:  # short sleeps: the count of those coming may drop to zero meanwhile
                    item = self.jobs.get(timeout=min(remaining, 0.001))
                except queue.Empty:
                    continue
            if item is _STOP:
                stopping = True
                break
            batch.append(item)
        return batch, stopping

    def _work(self) -> None:
        while True:
            first = self.jobs.get()
            if first is _STOP:
                return
            batch, stopping = self._gather(first)
            jobs = [job for job, _ in batch]
            try:
                results = self.run_batch(jobs)
            except Exception as error:  # a bug, not bad input: every waiting request learns it
                log.exception("batch of %d failed", len(jobs))
                for _, future in batch:
                    future.set_exception(error)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
            self.stats.record(len(jobs))
            if stopping:
                return
