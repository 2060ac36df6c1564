"""Reading an annotation file and checking the values in it; anything unusable is a
``DataError`` (whole file) or ``None`` (one value, for the caller to log)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ldnet.numbers import is_finite_number

from .records import DataError


def load_json(path: str | Path):
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a JSON file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None


def schema_error(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: not the expected schema: {reason}")


def number_list(value, length: int | None = None) -> np.ndarray | None:
    """``value`` as a float64 array when it is a list of finite numbers (of ``length``)."""
    if not isinstance(value, (list, tuple)) or not all(is_finite_number(v) for v in value):
        return None
    if length is not None and len(value) != length:
        return None
    return np.asarray(value, dtype=np.float64)


def is_list_of_lists(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, list) for v in value)
