"""`ldnet serve --weights W`: the HTTP pose service (``ldnet.serve``)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="HTTP pose service with a browser page")
    parser.add_argument("--weights", required=True)
    parser.set_defaults(run=run)


def run(args) -> int:
    raise NotImplementedError  # filled in by the service work (ldnet.serve)
