"""Argument types and error reporting shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys

from ldnet.errors import LDNetError


class CLIError(LDNetError):
    """Bad input from the user: printed as one line, exit code 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print only the error, on one line."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def input_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``256x192``) into ``(height, width)``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"malformed input size {text!r}: expected HxW with positive integers, e.g. 256x192"
        )
    height, width = int(parts[0]), int(parts[1])
    if height % 32 or width % 32:
        raise argparse.ArgumentTypeError(
            f"input size {text!r} is not a multiple of 32 in both dimensions "
            "(the 1/32 branch needs it), e.g. 256x192, 384x288, 256x256"
        )
    return height, width


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def model_choice(parser: argparse.ArgumentParser, flag: str = "--model", **kwargs) -> None:
    """Add a ``--model`` option restricted to the presets."""
    from ldnet.models import PRESETS

    parser.add_argument(flag, choices=list(PRESETS), metavar="NAME", **kwargs)
