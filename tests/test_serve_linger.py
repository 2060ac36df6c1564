"""Lingering close in the real `ldnet serve` (a child process on 127.0.0.1): a client that
sends a whole oversized body before it reads (urllib) reads the 413, and a client that
keeps sending past the drain bounds is cut off instead of holding the server."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from helpers import random_checkpoint

from ldnet.serve.linger import DRAIN_IDLE_S, DRAIN_MAX_BYTES, DRAIN_MAX_S
from ldnet.serve.process import ServerProcess

BODY_LIMIT_MB = 0.5
LIMIT_BYTES = int(BODY_LIMIT_MB * 2**20)
TOO_LARGE = {"error": f"body larger than the {LIMIT_BYTES}-byte limit"}
UPLOAD_BYTES = 64 * 2**20
# What the kernels hold on the way (socket buffers of both ends on loopback) on top of what
# the server read: a client is cut off at most this far past the drain bound.
SOCKET_BUFFERS_BYTES = 16 * 2**20
# Time the loaded test machine may add to a bound before the cut is seen.
SLACK_S = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    weights = random_checkpoint(
        tmp_path_factory.mktemp("linger") / "ldnet_s.pt", "ldnet_s", size=(128, 96)
    )
    with ServerProcess(["--weights", weights, "--max-body-mb", BODY_LIMIT_MB]) as running:
        yield running


def urllib_upload(url: str, body) -> urllib.error.HTTPError:
    """POST ``body`` (bytes: Content-Length; an iterator: chunked) and return the error
    answer; a reset or a 200 fails the test."""
    request = urllib.request.Request(
        url + "/v1/pose", data=body, headers={"Content-Type": "image/jpeg"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    return caught.value


def chunks(total: int, size: int = 2**20):
    for start in range(0, total, size):
        yield b"\xff" * min(size, total - start)


def test_urllib_reads_the_413_of_a_64_mib_upload(server):
    for body in (b"\xff\xd8\xff" + bytes(UPLOAD_BYTES - 3), chunks(UPLOAD_BYTES)):
        answer = urllib_upload(server.url, body)
        assert answer.code == 413
        assert json.loads(answer.read()) == TOO_LARGE
        assert answer.headers["Connection"] == "close"
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as health:
        assert json.loads(health.read()) == {"status": "ok"}


def open_upload(server, headers: str) -> socket.socket:
    """A raw connection that has sent the head of a POST /v1/pose and no body yet."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = f"POST /v1/pose HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n{headers}\r\n"
    connection.sendall(head.encode())
    return connection


def send_until_cut_off(connection: socket.socket, piece: bytes, pause_s: float, limit_s: float):
    """Send ``piece`` again and again until the server cuts the connection; the bytes sent
    and the seconds it took. Fails if the server still reads after ``limit_s``."""
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            connection.sendall(piece)
        except OSError:  # reset or broken pipe: the server closed
            return sent, time.monotonic() - start
        sent += len(piece)
        time.sleep(pause_s)
    pytest.fail(f"the server still read after {limit_s:g} s ({sent} bytes)")


def status_line(connection: socket.socket) -> bytes:
    return connection.recv(4096).split(b"\r\n", 1)[0]


def test_a_client_sending_for_ever_is_cut_off_at_the_byte_bound(server):
    connection = open_upload(server, "Transfer-Encoding: chunked\r\n")
    piece = b"10000\r\n" + bytes(0x10000) + b"\r\n"  # 64 KiB chunks, no end
    with connection:
        sent, elapsed_s = send_until_cut_off(connection, piece, 0.0, DRAIN_MAX_S + SLACK_S)
    assert LIMIT_BYTES < sent <= LIMIT_BYTES + DRAIN_MAX_BYTES + SOCKET_BUFFERS_BYTES, sent
    assert elapsed_s < DRAIN_MAX_S + SLACK_S
    assert_still_serving(server)


def test_a_slow_client_reads_the_413_at_once_and_is_cut_off_at_the_time_bound(server):
    # It announces more than the limit: answered before any body byte, then drained while
    # it sends a byte every 0.2 s (never idle for DRAIN_IDLE_S), until the time bound.
    connection = open_upload(server, f"Content-Length: {LIMIT_BYTES + 1}\r\n")
    with connection:
        assert status_line(connection) == b"HTTP/1.1 413 Request Entity Too Large"
        sent, elapsed_s = send_until_cut_off(connection, b"\x00", 0.2, DRAIN_MAX_S + SLACK_S)
    assert DRAIN_MAX_S - 1.0 < elapsed_s < DRAIN_MAX_S + SLACK_S, elapsed_s
    assert sent < 100
    assert_still_serving(server)


def read_to_close(connection: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and the seconds that took."""
    start, answer = time.monotonic(), b""
    while chunk := connection.recv(4096):
        answer += chunk
    return answer, time.monotonic() - start


def assert_413(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and json.loads(body) == TOO_LARGE


def test_a_silent_client_is_closed_after_the_idle_bound(server):
    with open_upload(server, f"Content-Length: {LIMIT_BYTES + 1}\r\n") as connection:
        answer, closed_after_s = read_to_close(connection)
    assert_413(answer)
    assert DRAIN_IDLE_S - 0.2 < closed_after_s < DRAIN_IDLE_S + SLACK_S, closed_after_s


def test_an_announced_body_past_the_byte_bound_is_not_read(server):
    announced = DRAIN_MAX_BYTES + LIMIT_BYTES + 1
    with open_upload(server, f"Content-Length: {announced}\r\n") as connection:
        answer, closed_after_s = read_to_close(connection)
    assert_413(answer)
    assert closed_after_s < DRAIN_IDLE_S - 0.2  # closed without waiting for a byte


def assert_still_serving(server) -> None:
    with urllib.request.urlopen(server.url + "/v1/model", timeout=10) as answer:
        assert json.loads(answer.read())["name"] == "ldnet_s"
