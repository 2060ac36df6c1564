"""The one exception type of bad prediction input (files, boxes, detectors, sources)."""

from __future__ import annotations

from ldnet.errors import LDNetError


class PredictInputError(LDNetError, ValueError):
    """Input that cannot be used; the message names the input and the problem."""


class DetectorError(PredictInputError):
    """A detector that cannot be loaded or whose outputs are not of a documented form."""
