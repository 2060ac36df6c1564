"""Atomic file output: write beside the target, rename into place when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder, moved onto ``path`` only if the block
    succeeds; removed otherwise. The temporary file keeps the target's suffix unless
    ``suffix`` is given (OpenCV and others choose a format by it)."""
    target = Path(path)
    suffix = target.suffix if suffix is None else suffix
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    # mkstemp makes the file private (0600); a result file gets the usual umask-based mode.
    temporary.chmod(0o666 & ~_umask())
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete what ``atomic_path`` left for ``names`` in ``folder`` when its process was killed
    mid-write (SIGKILL runs no cleanup): a resumed run must not accumulate them. Call only
    while no other process writes there. Returns what was removed."""
    removed = []
    for name in names:
        for stale in Path(folder).glob(f".{name}.*"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
