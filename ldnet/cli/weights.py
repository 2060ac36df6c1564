"""`ldnet weights import|list|get`: weights of the HRNet lineage (official HRNet and MMPose
checkpoints, the ImageNet backbone) as ldnet checkpoints, and the catalogue of public ones.

Each sub-command's work is in ``ldnet.lineage``; this module only parses arguments."""

from __future__ import annotations

from pathlib import Path

from ldnet.datasets import DATASETS

from .common import input_size


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="import official HRNet / MMPose checkpoints; list and download public weights",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    imported = verbs.add_parser(
        "import",
        help="an official HRNet, MMPose 0.x / 1.x or DDP checkpoint -> an ldnet checkpoint",
    )
    imported.add_argument("file", type=Path, metavar="FILE")
    imported.add_argument("--model", required=True, help="the network the file holds (hrnet_w32)")
    imported.add_argument("--input", required=True, type=input_size, metavar="HxW")
    imported.add_argument("--dataset", choices=list(DATASETS), help="default: from the joints")
    imported.add_argument("--decoder", choices=["msra", "dark"], default=None)
    imported.add_argument("--output", required=True, type=Path, metavar="OUT.pt")
    imported.set_defaults(run=run_import)

    listed = verbs.add_parser("list", help="the known public checkpoints")
    listed.add_argument("--json", action="store_true", help="machine-readable")
    listed.set_defaults(run=run_list)

    got = verbs.add_parser("get", help="download a known checkpoint, verify, import")
    got.add_argument("name", metavar="NAME")
    got.add_argument("--cache", type=Path, default=None, help="default: $XDG_CACHE_HOME/ldnet")
    got.set_defaults(run=run_get)


def run_import(args) -> int:
    raise NotImplementedError  # filled in by the import work (ldnet.lineage.importer)


def run_list(args) -> int:
    raise NotImplementedError  # filled in by the catalogue work (ldnet.lineage.catalog)


def run_get(args) -> int:
    raise NotImplementedError  # filled in by the catalogue work (ldnet.lineage.download)
