"""The API key: read once from a file, compared in constant time, never logged.

A client sends it as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Only the probes
``/healthz`` and ``/readyz`` (a load balancer's health checks carry no secrets) and the page
at ``/`` (static, holds no data; it sends the key the user gives with each call) are open
without it.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from .errors import ServeError

OPEN_PATHS = ("/", "/healthz", "/readyz")
MIN_KEY_LENGTH = 16


class ApiKeyError(ServeError):
    def __init__(self, message: str):
        super().__init__(message, 401, {"WWW-Authenticate": "Bearer"})


def read_api_key(path: str | Path) -> bytes:
    """The key is the file's text without surrounding whitespace (a trailing newline)."""
    path = Path(path)
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        raise ServeError(f"{path}: no such API key file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ServeError(f"{path}: unreadable API key file ({error})") from None
    if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
        raise ServeError(
            f"{path}: the API key must be one word of at least {MIN_KEY_LENGTH} characters"
        )
    return key.encode()


def presented_key(headers) -> bytes | None:
    """The key a request carries, from either header, or None."""
    value = headers.get("x-api-key")
    if value is None:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        value = token.strip() if scheme.lower() == "bearer" else None
    return value.encode() if value else None


def check_api_key(expected: bytes, headers) -> None:
    """Raise ``ApiKeyError`` (401) unless the request carries ``expected``."""
    given = presented_key(headers)
    if given is None:
        raise ApiKeyError("missing API key (send Authorization: Bearer KEY or X-API-Key: KEY)")
    # compare_digest takes the same time wherever the first differing byte is.
    if not hmac.compare_digest(given, expected):
        raise ApiKeyError("wrong API key")
