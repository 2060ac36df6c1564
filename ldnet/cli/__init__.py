"""The `ldnet` command: one entry point, one module per sub-command.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``run`` (a function of the parsed arguments returning an exit code) as the default.
Bad input raises an ``LDNetError`` (``CLIError`` here, or the library's own subclass) or
fails argument parsing, and is reported as one line naming the input and the problem, with
exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ldnet.errors import LDNetError

from .common import OneLineErrorParser

# Sub-command modules, in the order `ldnet --help` lists them.
COMMAND_MODULES = (
    "ldnet.cli.complexity",
    "ldnet.cli.bench",
    "ldnet.cli.evaluate",
    "ldnet.cli.data",
    "ldnet.cli.synth",
    "ldnet.cli.train",
    "ldnet.cli.test",
    "ldnet.cli.predict",
    "ldnet.cli.export",
    "ldnet.cli.weights",
    "ldnet.cli.serve",
    "ldnet.cli.plot",
    "ldnet.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="ldnet",
        description="LDNet: lightweight dynamic-convolution network for 2D human pose estimation",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except LDNetError as error:  # bad input, from any module: one line, exit 2
        print(f"ldnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ldnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
