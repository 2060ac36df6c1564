"""One error base for everything a user can cause and fix.

A library function that rejects its input (a config key, an annotation file, a checkpoint, an
image, a box) raises a subclass of ``LDNetError`` whose message is one line naming the input
and the problem. The command line catches ``LDNetError`` in one place (``ldnet.cli.main``)
and prints it with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LDNetError(Exception):
    """Bad input: the message names the input and the problem, on one line."""
