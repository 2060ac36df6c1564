"""A metrics table as HRNet prints it: one markdown row of names, one of values."""

from __future__ import annotations

import math
from collections.abc import Mapping


def format_metrics_table(
    metrics: Mapping[str, float], title: str | None = None, digits: int = 3
) -> str:
    """``| AP | AP50 | ... |`` over ``| 0.735 | 0.901 | ... |``; NaN prints as ``n/a``."""
    names = list(metrics)
    values = [
        "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"
        for value in metrics.values()
    ]
    widths = [max(len(name), len(value)) for name, value in zip(names, values, strict=True)]
    lines = []
    if title is not None:
        lines.append(title)
    lines.append("| " + " | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.append("| " + " | ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)) + " |")
    return "\n".join(lines)


def metrics_to_json(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """Plain floats, NaN as None (JSON has no NaN)."""
    return {
        name: None if value is None or math.isnan(value) else float(value)
        for name, value in metrics.items()
    }
