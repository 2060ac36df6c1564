"""The one exception type of bad prediction input (files, boxes, detectors, sources)."""

from __future__ import annotations


class PredictInputError(ValueError):
    """Input that cannot be used; the message names the input and the problem."""
