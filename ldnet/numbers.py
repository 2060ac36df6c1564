"""The one test for "is this JSON value a usable number?", shared by readers and evaluation."""

from __future__ import annotations

import math


def is_finite_number(value) -> bool:
    """An int or float that is neither a bool nor NaN/infinite.

    ``json.load`` turns ``true`` into a bool (an int subclass) and ``NaN``/``Infinity`` into
    floats; none of them is a coordinate, a score or a size.
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
