"""``ldnet serve`` as a child process on a free local port: what the benchmark and the tests
use to measure and check the real server (sockets, uvicorn, signals), not an in-process app.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import ServeError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``with ServerProcess(["--weights", w]) as server: ...`` (requests to ``server.url``).

    Starts ``python -m ldnet.cli serve`` with the given arguments on a free port of
    127.0.0.1, waits until ``/readyz`` answers 200, and stops it with SIGTERM on exit.
    The server's output goes to a file (``log_text()``), so a full pipe never blocks it.
    """

    def __init__(
        self,
        arguments: list[str],
        *,
        ready_timeout_s: float = 120.0,
        threads: int | None = 1,
        env: dict | None = None,
    ):
        self.arguments = [str(a) for a in arguments]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_timeout_s = ready_timeout_s
        self.threads = threads
        self.env = env
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "ldnet.cli", "serve", *self.arguments]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.threads:
            command += ["--threads", str(self.threads)]
        env = dict(os.environ, **(self.env or {}))
        if self.threads:  # OpenMP and oneDNN pools sized before torch is imported
            env.setdefault("OMP_NUM_THREADS", str(self.threads))
        handle, name = tempfile.mkstemp(prefix="ldnet-serve-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(handle, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(
                    f"ldnet serve exited with code {self.process.returncode}: "
                    f"{self.log_text().strip().splitlines()[-1:]}",
                    500,
                )
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or warming up (503)
            time.sleep(0.2)
        self.stop()
        raise ServeError(f"ldnet serve not ready after {self.ready_timeout_s:g} s", 500)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def terminate(self) -> None:
        """SIGTERM: the server answers what is in flight, refuses the rest, and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait; a server that does not stop in time is killed."""
        if self.process is None:
            return None
        self.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def rss_bytes(self) -> int:
        """Resident memory of the server (``VmRSS`` of /proc/PID/status; Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise ServeError("no VmRSS line in /proc/PID/status", 500)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
