"""The ONNX file inside a downloaded detector archive, unpacked once into the cache.

MMDeploy's SDK export is a folder (``end2end.onnx`` beside ``deploy.json``,
``pipeline.json`` and ``detail.json``); OpenMMLab publishes it zipped, the folder name
first. Only the network is kept: ldnet does its own pre- and post-processing, so the json
files are not needed. Members are read by name and written to a path chosen here, never
extracted where the archive says (a member named ``../x`` cannot land outside the cache).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ldnet.errors import LDNetError, require_extra
from ldnet.files import atomic_path

SDK_NETWORK = "end2end.onnx"  # the file name MMDeploy's deploy.py gives the exported network
MAX_MEMBER_BYTES = 4 << 30  # a detector is < 1 GB; a member claiming more is not one


class ArchiveError(LDNetError):
    """An archive that is not a readable zip or holds no single ONNX network."""


def network_member(archive: zipfile.ZipFile, source: str) -> zipfile.ZipInfo:
    """The archive's ``end2end.onnx``; failing that, its only ``.onnx`` file."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    named = [info for info in members if Path(info.filename).name == SDK_NETWORK]
    candidates = named or [info for info in members if info.filename.lower().endswith(".onnx")]
    if len(candidates) != 1:
        found = ", ".join(info.filename for info in candidates) or "none"
        raise ArchiveError(
            f"{source}: expected one {SDK_NETWORK} (or one .onnx file), found {found}"
        )
    member = candidates[0]
    if member.file_size > MAX_MEMBER_BYTES:
        raise ArchiveError(f"{source}: {member.filename} claims {member.file_size} bytes")
    return member


def unpack_network(archive_path: Path, target: Path) -> Path:
    """Write the archive's ONNX network to ``target`` (atomically) and check it parses."""
    source = str(archive_path)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            member = network_member(archive, source)
            with atomic_path(target) as temporary:
                with archive.open(member) as packed, temporary.open("wb") as unpacked:
                    while block := packed.read(1 << 20):
                        unpacked.write(block)
                check_onnx(temporary, f"{source}: {member.filename}")
    except zipfile.BadZipFile as error:
        raise ArchiveError(f"{source}: not a readable zip archive ({error})") from None
    return target


def check_onnx(path: Path, source: str) -> None:
    """A file ONNX's checker accepts (a truncated or foreign file fails here, once, rather
    than in every later session)."""
    require_extra("deploy", "a YOLOX person detector")
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as error:  # onnx raises ValidationError, DecodeError and others
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else "empty"
        raise ArchiveError(f"{source}: not a valid ONNX model ({reason})") from None
