"""Throughput and latency of the real server: ``ldnet serve`` started as child processes,
one with micro-batching and one without (max batch 1), driven by C closed-loop clients.

Each request is one image with its person boxes; images/s counts 200 answers over the wall
time of the run, latency is per request as a client sees it (upload, queue, network, JSON).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ldnet.serve.loadgen import Call, LoadResult, run_load
from ldnet.serve.process import ServerProcess


@dataclass
class ServeBenchRow:
    max_batch: int
    clients: int
    requests: int
    ok: int
    busy: int  # 503 answers
    images_per_s: float
    p50_ms: float
    p95_ms: float
    mean_batch: float  # requests per network call (the server's /v1/stats)

    def as_dict(self) -> dict:
        return asdict(self)


def random_weights(model: str, input_size: tuple[int, int], folder: Path) -> Path:
    """A checkpoint of a random-init network (speed does not depend on the values)."""
    from ldnet.checkpoint import atomic_save
    from ldnet.inference import ModelRecord
    from ldnet.models import build_model

    torch.manual_seed(0)
    record = ModelRecord(model=model, num_joints=17, dataset="coco", input_size=input_size)
    network = build_model(model, record.num_joints)
    payload = {**record.to_checkpoint(), "state_dict": network.state_dict()}
    return atomic_save(payload, folder / f"{model}-random.pt")


def bench_image(path: Path | None, people: int) -> tuple[bytes, list[list[float]]]:
    """JPEG bytes and ``people`` boxes: a given image, or a 640x480 one of smooth noise
    (the network's cost does not depend on the pixels when the boxes are given)."""
    if path is not None:
        image = cv2.imread(str(path))
        if image is None:
            from ldnet.serve.errors import ServeError

            raise ServeError(f"{path}: not a readable image")
    else:
        noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
        image = cv2.resize(noise, (640, 480), interpolation=cv2.INTER_CUBIC)
    height, width = image.shape[:2]
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    # People side by side, each a third of the image wide and 80% high.
    boxes = [
        [
            float(width * (0.05 + 0.6 * i / max(people - 1, 1))),
            0.1 * height,
            width / 3,
            0.8 * height,
        ]
        for i in range(people)
    ]
    return data.tobytes(), boxes


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/v1/stats", timeout=10) as answer:
        return json.loads(answer.read())


def bench_serve(
    weights: Path,
    *,
    clients: list[int],
    max_batches: list[int],
    requests: int,
    rounds: int = 4,
    image: Path | None = None,
    people: int = 1,
    flip: bool = True,
    server_arguments: list[str] | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ServeBenchRow]:
    """One server per ``max_batches`` value, all started at once (an idle one costs no
    CPU); for each client count, ``rounds`` interleaved rounds of ``requests / rounds``
    requests per server, so a change in the machine's other load falls on every server
    alike. Throughput is the 200 answers over the summed wall time of a server's rounds;
    latencies are pooled over its rounds."""
    data, boxes = bench_image(image, people)
    call = Call(data, query={"boxes": json.dumps(boxes), "flip": str(flip).lower()})
    per_round = max(1, requests // rounds)
    servers = {}
    with ExitStack() as stack:
        for max_batch in max_batches:
            arguments = ["--weights", weights, "--max-batch", str(max_batch)]
            # Every client's request fits the queue: the figures are of service, not refusal.
            arguments += ["--max-queue", str(max(clients) * 2), "--log-level", "warning"]
            # Every request carries its boxes: no detector runs, so none is fetched.
            arguments += ["--whole-image"]
            server = ServerProcess(arguments + list(server_arguments or []), threads=threads)
            servers[max_batch] = stack.enter_context(server)
        for server in servers.values():  # warm-up: threads, allocator, batch shapes
            run_load(server.url, [call] * max(clients) * 2, max(clients))
        rows = []
        for count in clients:
            pooled = {max_batch: [] for max_batch in servers}
            for index in range(rounds):
                if progress:
                    progress(f"{count} client(s), round {index + 1}/{rounds}")
                for max_batch, server in servers.items():
                    before = server_stats(server.url)
                    result = run_load(server.url, [call] * per_round, count)
                    pooled[max_batch].append((result, before, server_stats(server.url)))
            rows += [_row(max_batch, count, runs) for max_batch, runs in pooled.items()]
    return sorted(rows, key=lambda row: (-row.max_batch, row.clients))


def _row(max_batch: int, clients: int, runs: list) -> ServeBenchRow:
    answers = [a for result, _, _ in runs for a in result.answers]
    merged = LoadResult(answers, sum(result.wall_s for result, _, _ in runs))
    served = sum(after["requests"] - before["requests"] for _, before, after in runs)
    calls = sum(after["batches"] - before["batches"] for _, before, after in runs)
    return ServeBenchRow(
        max_batch=max_batch,
        clients=clients,
        requests=len(answers),
        ok=sum(a.status == 200 for a in answers),
        busy=sum(a.status == 503 for a in answers),
        images_per_s=merged.throughput(),
        p50_ms=merged.latency_ms(0.5),
        p95_ms=merged.latency_ms(0.95),
        mean_batch=served / max(calls, 1),
    )
