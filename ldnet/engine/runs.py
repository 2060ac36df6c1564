"""Run folders: every train/test/demo run writes into its own folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ldnet.files import atomic_path


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
    with atomic_path(path) as temporary, temporary.open("w") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
    return path
