"""Public weights by name: download into a per-user cache, resume, verify, import.

The cache is ``$LDNET_CACHE``, else ``$XDG_CACHE_HOME/ldnet``, else ``~/.cache/ldnet``.
A download goes to ``NAME.part`` and resumes from its size with an HTTP Range request; only
a file whose sha256 starts with the catalogue's prefix is renamed to ``NAME.pth`` (a file that
fails is deleted, so nothing unverified is ever read); a pose checkpoint is then imported
into ``NAME.pt`` and the original removed; a detector archive (``NAME.zip``) has its ONNX
network unpacked into ``NAME.onnx`` and checked, and the archive removed. Each state is a
file name, so an interrupted run picks up where it stopped.

``LDNET_OFFLINE=1`` forbids downloads: a name that is not cached is then an error at once
(a machine whose firewall drops packets would otherwise wait for the timeout).

The standard library's urllib does the transfer: one GET with a Range header is all this
needs, and it follows redirects and speaks HTTPS without a further dependency.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from filelock import FileLock
from tqdm import tqdm

from ldnet.errors import LDNetError
from ldnet.files import atomic_path

from .catalog import WeightsEntry, find, lookup

CACHE_ENV = "LDNET_CACHE"
OFFLINE_ENV = "LDNET_OFFLINE"
TIMEOUT_S = 30.0  # per socket operation (connect, each read), not for the whole file
ATTEMPTS = 3  # a transfer cut midway is resumed this many times before giving up
CHUNK_BYTES = 1 << 16
# A `--weights` text with one of these endings (or a folder in it) is a path, never a name.
WEIGHTS_SUFFIXES = (".pt", ".pth", ".onnx", ".tar", ".ckpt")


class DownloadError(LDNetError):
    """A download that failed: unreachable, refused, cut, or not the published file."""


class _Interrupted(Exception):
    """A transfer that stopped early; what arrived is kept for the next attempt."""


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    if override is not None:
        return Path(override)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ldnet"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cached_path(entry: WeightsEntry, cache: str | os.PathLike | None = None) -> Path:
    """Where the ready file of ``entry`` lives: ``NAME.pt`` (an imported pose checkpoint),
    ``NAME.onnx`` (a detector) or ``NAME.pth`` (a backbone)."""
    suffix = {"pose": ".pt", "detector": ".onnx"}.get(entry.kind, ".pth")
    return cache_dir(cache) / f"{entry.name}{suffix}"


def is_cached(entry: WeightsEntry, cache: str | os.PathLike | None = None) -> bool:
    return cached_path(entry, cache).is_file()


def size_text(entry: WeightsEntry) -> str:
    """ "about 115 MB", or "size not listed"."""
    return f"about {entry.approx_mb:g} MB" if entry.approx_mb else "size not listed"


def resolve_weights(
    text: str | os.PathLike,
    cache: str | os.PathLike | None = None,
    *,
    kind: str = "pose",
    **options,
) -> Path:
    """What a ``--weights`` argument means: an existing path wins; a text that looks like a
    path stays one (its loader then names the missing file); a known name is fetched and
    imported on first use and read from the cache after. ``kind="backbone"`` resolves an
    ImageNet backbone for ``model.init_weights`` the same way."""
    path = Path(text)
    if path.exists():
        return path
    name = str(text)
    looks_like_path = os.sep in name or "/" in name or name.lower().endswith(WEIGHTS_SUFFIXES)
    if looks_like_path:
        return path
    entry = find(name)
    if entry is None:
        raise DownloadError(f"no such file or known weights name: {name}; see ldnet weights list")
    if entry.kind != kind:
        use = {"pose": "--weights", "detector": "--detector"}.get(entry.kind, "model.init_weights")
        raise DownloadError(
            f"{name}: {entry.description}, not {kind} weights; give it as {use} "
            f"(`ldnet weights get {name}` prints its path)"
        )
    return get(entry, cache, **options)


def get(
    name: str | WeightsEntry,
    cache: str | os.PathLike | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """The cached file for a catalogue name, downloading, verifying and importing it first if
    needed: ``NAME.pt`` (an ldnet checkpoint) for pose weights, ``NAME.onnx`` for a
    detector, ``NAME.pth`` for a backbone."""
    entry = name if isinstance(name, WeightsEntry) else lookup(name)
    if not entry.downloadable:
        raise DownloadError(f"{entry.name}: not a direct download: {entry.note}")
    ready = cached_path(entry, cache)
    if ready.is_file():
        return ready
    folder = ready.parent
    if offline():
        raise DownloadError(
            f"{entry.name}: not in the cache ({folder}) and {OFFLINE_ENV} is set; fetch it "
            f"where {urlsplit(entry.url).netloc} is reachable: ldnet weights get {entry.name} "
            f"({size_text(entry)}), then copy {ready.name} into the cache"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{folder}: cannot create the cache folder ({error})") from None
    # Two processes asking for the same name (serve workers, a script run twice) would
    # append to one .part file; the second waits, then finds the file in the cache.
    with FileLock(folder / f".{entry.name}.lock"):
        if ready.is_file():
            return ready
        if entry.kind == "detector":
            return _get_detector(entry, ready, timeout_s, progress)
        return _get_locked(entry, ready, folder / f"{entry.name}.pth", timeout_s, progress)


def _get_detector(entry: WeightsEntry, ready: Path, timeout_s: float, progress: bool) -> Path:
    """``NAME.onnx``: the archive's network unpacked and checked (then the archive is
    removed), or a bare ONNX file checked where it lands."""
    from .archives import ArchiveError, check_onnx, unpack_network

    options = {"timeout_s": timeout_s, "progress": progress}
    unpinned = entry.hash_of == "checkpoint"
    prefix = None if unpinned else entry.sha256
    if entry.layout == "onnx":
        fetch(entry.url, ready, prefix, **options)
        try:
            check_onnx(ready, entry.url)
        except ArchiveError:
            ready.unlink()  # never left in the cache to be trusted later
            raise
        return ready
    archive = ready.with_suffix(".zip")
    if not archive.is_file():
        fetch(entry.url, archive, prefix, **options)
    try:
        unpack_network(archive, ready)
    except ArchiveError as error:
        archive.unlink()  # kept, it would fail the same way on every run
        raise DownloadError(f"{entry.url}: {error}") from None
    if unpinned:
        # No published hash to check: say which file this is, so it can be pinned.
        print(
            f"{entry.name}: archive sha256 {file_sha256(archive)} (no hash is published for "
            f"it; {entry.sha256} in its name is its source checkpoint's); checked: a zip "
            "with one ONNX network that ONNX's checker accepts",
            file=sys.stderr,
        )
    archive.unlink()
    return ready


def _get_locked(
    entry: WeightsEntry, imported: Path, original: Path, timeout_s: float, progress: bool
) -> Path:
    if not original.is_file():
        fetch(entry.url, original, entry.sha256, timeout_s=timeout_s, progress=progress)
    if entry.kind != "pose":
        return original
    from .importer import write_imported

    # atomic_path: a crash while importing leaves no NAME.pt, so the next run imports again.
    with atomic_path(imported) as temporary:
        write_imported(
            original,
            temporary,
            model=entry.model,
            input_size=entry.input_size,
            dataset=entry.dataset,
            decoder=entry.decoder,
        )
    original.unlink()  # the import records the source's sha256; one copy of the weights is enough
    return imported


def fetch(
    url: str,
    target: Path,
    sha256_prefix: str | None,
    *,
    timeout_s: float = TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``target`` through ``target``'s ``.part`` file, resuming what an
    earlier run left there, and rename it into place only if its sha256 starts with
    ``sha256_prefix``; a file that does not is deleted. ``None``: no published hash to
    check (the caller checks the content instead)."""
    part = target.with_suffix(".part")
    reason = None
    for _ in range(ATTEMPTS):
        try:
            _transfer(url, part, timeout_s, progress, label=target.stem)
            break
        except _Interrupted as error:
            reason = error
    else:
        kept = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{url}: transfer cut {ATTEMPTS} times (last: {reason}); {part} keeps {kept} "
            "bytes, run the command again to resume"
        )
    found = file_sha256(part) if sha256_prefix is not None else None
    if found is not None and not found.startswith(sha256_prefix):
        part.unlink()
        raise DownloadError(
            f"{url}: wrong sha256: expected {sha256_prefix}..., found "
            f"{found[: len(sha256_prefix)]}...; the download was deleted"
        )
    os.replace(part, target)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _transfer(url: str, part: Path, timeout_s: float, progress: bool, label: str) -> None:
    """One GET into ``part``, from its current size on; raises ``_Interrupted`` if the body
    stops early and ``DownloadError`` if there is no body to get."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    response = _open(urllib.request.Request(url, headers=headers), timeout_s, offset)
    if response is None:  # 416: the part already holds the whole file; the hash decides
        return
    with response:
        if offset and not _resumes_at(response, offset):
            offset = 0  # the server ignored the Range (200) or answered another one: restart
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        try:
            file = part.open("ab" if offset else "wb")
        except OSError as error:
            raise DownloadError(f"{part}: cannot write ({error.strerror or error})") from None
        bar = tqdm(
            total=total,
            initial=offset,
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=not progress,
        )
        with file, bar:
            received = _copy(response, file, bar, part)
    if total is not None and received < total:
        raise _Interrupted(f"connection closed after {received} of {total} bytes")


def _copy(response, file, bar, part: Path) -> int:
    """The response body appended to ``file``; returns the file's size after it."""
    while True:
        try:
            chunk = response.read(CHUNK_BYTES)
        except (http.client.HTTPException, OSError) as error:  # reset, timeout, TLS
            raise _Interrupted(f"{type(error).__name__} after {file.tell()} bytes") from None
        if not chunk:
            return file.tell()
        try:
            file.write(chunk)
        except OSError as error:  # a full disk: what is written stays, for a resume
            raise DownloadError(f"{part}: cannot write ({error.strerror or error})") from None
        bar.update(len(chunk))


def _open(request: urllib.request.Request, timeout_s: float, offset: int):
    """urlopen with every failure turned into one line naming the address."""
    url = request.full_url
    host = urlsplit(url).netloc
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            return None
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise DownloadError(f"{url}: no answer from {host} within {timeout_s:g} s") from None
        raise DownloadError(f"{url}: cannot reach {host} ({error.reason})") from None
    except TimeoutError:
        raise DownloadError(f"{url}: no answer from {host} within {timeout_s:g} s") from None
    except (http.client.HTTPException, ConnectionError) as error:
        raise DownloadError(f"{url}: {host} broke off ({type(error).__name__})") from None


def _resumes_at(response, offset: int) -> bool:
    """A 206 whose Content-Range starts where our part file ends."""
    if response.status != 206:
        return False
    content_range = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        start = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return start == offset
