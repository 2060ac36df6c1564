"""The one error type of the service: a one-line message and the HTTP status it answers."""

from __future__ import annotations

from ldnet.errors import LDNetError


class ServeError(LDNetError):
    """A request the service refuses; answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def one_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, shortened: error bodies never carry a multi-line dump."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else "error"
    return line if len(line) <= limit else line[: limit - 3] + "..."
