"""One error base for everything a user can cause and fix.

A library function that rejects its input (a config key, an annotation file, a checkpoint, an
image, a box) raises a subclass of ``LDNetError`` whose message is one line naming the input
and the problem. The command line catches ``LDNetError`` in one place (``ldnet.cli.main``)
and prints it with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LDNetError(Exception):
    """Bad input: the message names the input and the problem, on one line."""


# The optional parts of the package (pyproject's extras) and what each holds: the core install
# trains, tests, evaluates and predicts with PyTorch; `make install` installs them all.
EXTRAS = {
    "deploy": ("onnx", "onnxruntime"),
    "serve": ("fastapi", "uvicorn", "python_multipart"),
    "openvino": ("openvino",),
    "tensorboard": ("tensorboard",),
    "plot": ("matplotlib",),
}


class MissingExtra(LDNetError):
    """A feature whose optional libraries (an extra of the package) are not installed."""


def require_extra(extra: str, purpose: str) -> None:
    """Raise ``MissingExtra`` (one line naming the extra and how to install it) unless every
    library of ``extra`` imports; ``purpose`` says what needed it."""
    import importlib

    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtra(
                f"{purpose} needs the '{extra}' extra ({module} is not installed): "
                f"pip install 'ldnet[{extra}]'"
            ) from None
