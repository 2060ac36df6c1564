"""`ldnet weights import|list|get`: weights of the HRNet lineage (official HRNet, MMPose and
LDNet checkpoints, the ImageNet backbone) as ldnet checkpoints, and the catalogue of public
ones.

Each sub-command's work is in ``ldnet.lineage``; this module only parses arguments."""

from __future__ import annotations

from pathlib import Path

from ldnet.datasets import DATASETS

from .common import input_size


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="import official HRNet / LDNet / MMPose checkpoints; list and download public weights",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    imported = verbs.add_parser(
        "import",
        help="an official HRNet or LDNet, MMPose 0.x / 1.x or DDP checkpoint -> an ldnet "
        "checkpoint",
    )
    imported.add_argument("file", type=Path, metavar="FILE")
    imported.add_argument(
        "--model",
        required=True,
        help="the network the file holds: hrnet_w32 (HRNet, MMPose); ldnet_w32, ldnet_w48, "
        "ldnet_w32_ld3, ldnet_w48_ld3 (official LDNet: its width, its block order)",
    )
    imported.add_argument("--input", required=True, type=input_size, metavar="HxW")
    imported.add_argument("--dataset", choices=list(DATASETS), help="default: from the joints")
    imported.add_argument("--decoder", choices=["msra", "dark"], default=None)
    imported.add_argument(
        "--temperature",
        type=_temperature,
        metavar="T",
        help="LDNet: the kernel attention's softmax temperature to run the weights at "
        "(default 34, the official model's; 1 after the annealing schedule)",
    )
    imported.add_argument("--output", required=True, type=Path, metavar="OUT.pt")
    imported.set_defaults(run=run_import)

    listed = verbs.add_parser("list", help="the known public checkpoints")
    listed.add_argument("--json", action="store_true", help="machine-readable")
    listed.set_defaults(run=run_list)

    got = verbs.add_parser(
        "get", help="download a known checkpoint or detector, verify, import or unpack"
    )
    got.add_argument("name", metavar="NAME")
    got.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="default: $LDNET_CACHE, else $XDG_CACHE_HOME/ldnet, else ~/.cache/ldnet",
    )
    got.set_defaults(run=run_get)


def run_import(args) -> int:
    from ldnet.checkpoint import load_checkpoint
    from ldnet.lineage.importer import write_imported
    from ldnet.models.record import record_from_checkpoint

    output = write_imported(
        args.file,
        args.output,
        model=args.model,
        input_size=args.input,
        dataset=args.dataset,
        decoder=args.decoder,
        temperature=args.temperature,
    )
    written = load_checkpoint(output)  # read back: what the other commands will see
    record = record_from_checkpoint(written, str(output))
    source = written["source"]
    temperature = "" if record.temperature is None else f", temperature {record.temperature:g}"
    print(
        f"wrote {output}: {record.model}, {record.num_joints} joints ({record.dataset}), "
        f"{record.input_size[0]}x{record.input_size[1]}, {record.codec} decoding "
        f"(sigma {record.sigma:g}), {record.convention} convention{temperature}; from "
        f"{source['file']} ({source['layout']}, sha256 {source['sha256'][:12]})"
    )
    return 0


def _temperature(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def run_list(args) -> int:
    import json

    from ldnet.lineage.catalog import catalog

    entries = list(catalog().values())
    if args.json:
        print(json.dumps([entry.to_json() for entry in entries], indent=2))
        return 0
    rows = [("NAME", "KIND", "MODEL", "INPUT", "DATASET", "DECODER", "PUBLISHED", "FILE", "GET")]
    for entry in entries:
        size = "x".join(map(str, entry.input_size)) if entry.input_size else "-"
        rows.append(
            (
                entry.name,
                entry.kind,
                entry.model,
                size,
                entry.dataset or "-",
                entry.decoder or "-",
                f"{entry.published:.1f} {entry.metric}",
                entry.layout,
                "yes" if entry.downloadable else "by hand",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    print(
        "\n`ldnet weights get NAME` downloads, verifies and imports one (GET = yes); any "
        "--weights also takes a NAME, and --detector a detector's. 'by hand': a shared "
        "folder, see `--json` notes."
    )
    return 0


def run_get(args) -> int:
    from ldnet.lineage.download import get

    print(get(args.name, args.cache))
    return 0
