"""Run folders: every train/test/demo run writes into its own folder."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """``output_dir/name-YYYYmmdd-HHMMSS`` (with a counter if that exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir) / f"{name}-{stamp}"
    path, counter = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{counter}")
        counter += 1
    path.mkdir(parents=True)
    return path


def write_json_atomic(path: str | Path, data) -> Path:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
