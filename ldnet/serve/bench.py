"""Throughput and latency of the real server: ``ldnet serve`` started as a child process,
driven by C closed-loop clients, once with micro-batching and once without (max batch 1).

Each request is one image with its person boxes; images/s counts 200 answers over the wall
time of the run, latency is per request as a client sees it (upload, queue, network, JSON).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .loadgen import Call, run_load
from .process import ServerProcess


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
            from .errors import ServeError

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
    image: Path | None = None,
    people: int = 1,
    flip: bool = True,
    server_arguments: list[str] | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ServeBenchRow]:
    data, boxes = bench_image(image, people)
    call = Call(data, query={"boxes": json.dumps(boxes), "flip": str(flip).lower()})
    rows = []
    for max_batch in max_batches:
        arguments = ["--weights", weights, "--max-batch", str(max_batch), "--log-level", "warning"]
        # Every client's request fits the queue: the figures are of service, not refusal.
        arguments += ["--max-queue", str(max(clients) * 2)] + list(server_arguments or [])
        with ServerProcess(arguments, threads=threads) as server:
            run_load(server.url, [call] * max(clients) * 2, max(clients))  # warm-up
            for count in clients:
                if progress:
                    progress(f"max batch {max_batch}, {count} client(s)")
                before = server_stats(server.url)
                result = run_load(server.url, [call] * requests, count)
                after = server_stats(server.url)
                ok = [a for a in result.answers if a.status == 200]
                calls = after["batches"] - before["batches"]
                rows.append(
                    ServeBenchRow(
                        max_batch=max_batch,
                        clients=count,
                        requests=requests,
                        ok=len(ok),
                        busy=sum(a.status == 503 for a in result.answers),
                        images_per_s=result.throughput(),
                        p50_ms=result.latency_ms(0.5),
                        p95_ms=result.latency_ms(0.95),
                        mean_batch=(after["requests"] - before["requests"]) / max(calls, 1),
                    )
                )
    return rows
