"""A closed-loop load generator: C clients, each with its own keep-alive connection, send
their share of a request list one after another, and every answer's status, Retry-After
and latency is kept. The stdlib's ``http.client`` in threads: a client costs little CPU
beside the server it measures, and nothing is installed for it."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Call:
    """One request: ``POST path?query`` with ``body`` of ``content_type``."""

    body: bytes
    content_type: str = "image/jpeg"
    query: dict = field(default_factory=dict)
    path: str = "/v1/pose"
    kind: str = "valid"  # the caller's label, kept with the answer
    headers: tuple = ()


@dataclass
class Answer:
    call: Call
    kind: str
    status: int  # 0: no HTTP answer (connection closed or reset)
    latency_s: float
    retry_after: str | None
    body: bytes


@dataclass
class LoadResult:
    answers: list[Answer]
    wall_s: float

    def of(self, kind: str) -> list[Answer]:
        return [a for a in self.answers if a.kind == kind]

    def throughput(self, kind: str = "valid", status: int = 200) -> float:
        """Answers of ``kind`` with ``status`` per second of wall time."""
        count = sum(1 for a in self.of(kind) if a.status == status)
        return count / self.wall_s if self.wall_s > 0 else 0.0

    def latency_ms(self, quantile: float, kind: str = "valid", status: int = 200) -> float:
        values = sorted(a.latency_s for a in self.of(kind) if a.status == status)
        if not values:
            return float("nan")
        index = min(len(values) - 1, max(0, round(quantile * (len(values) - 1))))
        return 1000 * values[index]


def _send(connection: http.client.HTTPConnection, call: Call) -> tuple[int, str | None, bytes]:
    target = call.path + ("?" + urllib.parse.urlencode(call.query) if call.query else "")
    headers = {"Content-Type": call.content_type, **dict(call.headers)}
    connection.request("POST", target, body=call.body, headers=headers)
    response = connection.getresponse()
    body = response.read()
    if response.getheader("connection", "").lower() == "close":
        connection.close()  # the next request opens a new connection
    return response.status, response.getheader("retry-after"), body


def run_load(url: str, calls: list[Call], clients: int, timeout_s: float = 120.0) -> LoadResult:
    """Send ``calls`` from ``clients`` concurrent clients (client i takes calls i, i + C,
    ...); return every answer and the wall time from the first send to the last answer."""
    address = urllib.parse.urlsplit(url)
    answers: list[list[Answer]] = [[] for _ in range(clients)]

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout_s)
        try:
            for call in calls[index::clients]:
                start = time.perf_counter()
                try:
                    status, retry_after, body = _send(connection, call)
                except (ConnectionError, http.client.HTTPException, TimeoutError):
                    status, retry_after, body = 0, None, b""
                    connection.close()
                answers[index].append(
                    Answer(call, call.kind, status, time.perf_counter() - start, retry_after, body)
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - start
    return LoadResult([a for per_client in answers for a in per_client], wall_s)
