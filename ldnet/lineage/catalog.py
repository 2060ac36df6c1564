"""The public checkpoints of networks ldnet can build, by name: what each is, what it was
trained for, its published accuracy and where it can be fetched.

Only HRNet-W32 pose files are listed: ``hrnet_w32`` is the one preset that is the same
network as a published checkpoint (HRNet's ``PoseHighResolutionNet`` W32). W48 and the UDP /
RLE / ViTPose siblings in the same MMPose tables need networks or codecs ldnet does not build.

Person detectors (``kind = "detector"``) are OpenMMLab's YOLOX human detectors as MMDeploy
exported them for its SDK: the ``onnx_sdk`` zip archives that rtmlib's ``Body`` downloads
(``rtmlib/tools/solution/body.py``: tiny at 416x416, m and x at 640x640), trained on
COCO + Human-Art (MMPose ``projects/rtmpose/yolox/humanart/*.py``). Each archive holds
``end2end.onnx``; ``ldnet.predict.onnx_detector`` documents its input and outputs. The
eight hex digits in an archive's name are **not** the archive's sha256: they are those of
the PyTorch checkpoint it was converted from (MMPose's Human-Art table publishes
``yolox_tiny_8xb8-300e_humanart-6f3252f9.pth`` beside the zip of the same stem, and one
prefix cannot be the start of two files' hashes). OpenMMLab publishes no hash for the
archives (rtmlib downloads them unchecked), so these entries say ``hash_of="checkpoint"``:
the download is checked by what it must hold instead, and its full sha256 is printed so a
site can pin it (a site entry with the full hash and ``hash_of="file"``).

Sources (read 2026-11-26): MMPose's model-index files
``configs/body_2d_keypoint/topdown_heatmap/{coco/hrnet_coco.yml, coco/hrnet_dark_coco.yml,
mpii/hrnet_mpii.yml, mpii/hrnet_dark_mpii.yml, crowdpose/hrnet_crowdpose.yml}`` and the
configs they name (input size, codec); the README of the HRNet reference
(leoxiaobin/deep-high-resolution-net.pytorch) for its own files and accuracies. MMPose's
``tools/misc/publish_model.py`` names each file ``...-{sha256[:8]}_{date}.pth``: the eight
hex digits are the start of the file's sha256, which ``ldnet weights get`` checks.

A site adds or overrides entries (a private mirror, an air-gapped copy) with a JSON file
named by ``$LDNET_WEIGHTS_CATALOG``: a list of objects with the fields of ``WeightsEntry``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from ldnet.errors import LDNetError

CATALOG_ENV = "LDNET_WEIGHTS_CATALOG"
KINDS = ("pose", "backbone", "detector")
# "mmdeploy-sdk": a zip of an MMDeploy SDK model folder (end2end.onnx and its json files);
# "onnx": a bare ONNX detector file (a site mirror may list one).
LAYOUTS = ("mmpose-1.x", "mmpose-0.x", "hrnet", "imagenet", "mmdeploy-sdk", "onnx")
DETECTOR_MODELS = ("yolox",)  # detector families whose inputs and outputs ldnet reads
DETECTOR_LAYOUTS = ("mmdeploy-sdk", "onnx")
HASH_OF = ("file", "checkpoint")
# What `ldnet predict SOURCE` runs when it is given no --weights and no --detector.
DEFAULT_POSE = "hrnet_w32_coco_256x192"
DEFAULT_DETECTOR = "yolox_m_humanart"  # rtmlib's "balanced" choice
DECODERS = ("msra", "dark")
_HEX_PREFIX = re.compile(r"[0-9a-f]{8,64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a file name in the cache, never a path


class CatalogError(LDNetError):
    """A weights name that is not known, or a site catalogue file that does not parse."""


@dataclass(frozen=True)
class WeightsEntry:
    """One public checkpoint. ``sha256`` is the start of the file's sha256 (8 hex digits
    at least) or None where no file address is published (a shared folder)."""

    name: str
    description: str
    kind: str  # "pose": a keypoint network; "backbone": ImageNet weights for model.init_weights;
    # "detector": a person detector (ONNX) for images without boxes
    layout: str  # how the file stores its weights, see LAYOUTS
    model: str  # the ldnet preset that is the same network; a detector: its family (yolox)
    input_size: tuple[int, int] | None  # (height, width); None for a backbone
    dataset: str | None  # joint set: coco | mpii | crowdpose; None for a backbone
    decoder: str | None  # msra | dark: the codec the published figure was measured with
    metric: str  # what the published figure measures
    published: float  # in percent
    url: str
    sha256: str | None
    note: str = ""
    # The download's size, roughly, for the line printed before fetching it: float32
    # parameters x 4 bytes (the published parameter counts); None where not estimated.
    approx_mb: float | None = None
    # "file": ``sha256`` starts the download's own hash, checked after download;
    # "checkpoint": it is the source checkpoint's (printed, not checked; see above).
    hash_of: str = "file"

    @property
    def downloadable(self) -> bool:
        """A direct file address with a hash to check; shared folders are listed only."""
        return self.sha256 is not None

    def to_json(self) -> dict:
        data = asdict(self)
        data["input_size"] = list(self.input_size) if self.input_size else None
        data["downloadable"] = self.downloadable
        return data


_MMPOSE_V1 = "https://download.openmmlab.com/mmpose/v1/body_2d_keypoint/topdown_heatmap"
_MMPOSE_V0 = "https://download.openmmlab.com/mmpose/top_down/hrnet"
_HRNET_DRIVE = "https://drive.google.com/drive/folders/1hOTihvbyIxsm5ygDpbUuJ7O_tzv4oXjC"
_HRNET_NOTE = (
    "the HRNet authors' model zoo is a Google Drive folder (also OneDrive: "
    "https://1drv.ms/f/s!AhIXJn_J-blW231MH2krnmLq5kkQ) with no direct file address or "
    "published hash: download it by hand, then `ldnet weights import FILE --model hrnet_w32 "
    "--input {size} --output OUT.pt`"
)
# 28,536,113 float32 parameters (hrnet_w32 with 17 joints); a local MMPose 1.x file of them
# measured 114.8 MB.
_HRNET_W32_MB = 115.0
_RTMPOSE_SDK = "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk"
_HUMANART_AP = "Human-Art val person AP"
_HUMANART_NOTE = (
    "YOLOX (Ge et al., 2021) trained by MMPose on COCO + Human-Art, exported by MMDeploy "
    "(NMS inside the graph); AP as rtmlib's README lists it. Human-Art is released for "
    "non-commercial use: check its terms before a commercial one. Size estimated from the "
    "parameter count ({params}M, YOLOX's table). The hex digits in the file name are the "
    "source .pth's sha256 prefix, not the archive's: no hash is published for the archive"
)
# COCO figures are on val2017 with the person detector's boxes (human AP 56.4), as published.
_COCO_AP = "COCO val2017 AP"

BUILTIN: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        "hrnet_w32_coco_256x192",
        "MMPose 1.x HRNet-W32, COCO, 210 epochs",
        "pose", "mmpose-1.x", "hrnet_w32", (256, 192), "coco", "msra", _COCO_AP, 74.6,
        f"{_MMPOSE_V1}/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth",
        "81c58e40", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_coco_384x288",
        "MMPose 1.x HRNet-W32, COCO, 210 epochs",
        "pose", "mmpose-1.x", "hrnet_w32", (384, 288), "coco", "msra", _COCO_AP, 76.0,
        f"{_MMPOSE_V1}/coco/td-hm_hrnet-w32_8xb64-210e_coco-384x288-ca5956af_20220909.pth",
        "ca5956af", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_dark_coco_256x192",
        "MMPose 1.x HRNet-W32 trained and tested with DARK (unbiased) heatmaps, COCO",
        "pose", "mmpose-1.x", "hrnet_w32", (256, 192), "coco", "dark", _COCO_AP, 75.7,
        f"{_MMPOSE_V1}/coco/td-hm_hrnet-w32_dark-8xb64-210e_coco-256x192-0e00bf12_20220914.pth",
        "0e00bf12", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_dark_coco_384x288",
        "MMPose 1.x HRNet-W32 trained and tested with DARK (unbiased) heatmaps, COCO",
        "pose", "mmpose-1.x", "hrnet_w32", (384, 288), "coco", "dark", _COCO_AP, 76.6,
        f"{_MMPOSE_V1}/coco/td-hm_hrnet-w32_dark-8xb64-210e_coco-384x288-9bab4c9b_20220917.pth",
        "9bab4c9b", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_coco_aic_256x192",
        "MMPose 1.x HRNet-W32 trained on COCO + AI Challenger (merged into COCO's 17 joints)",
        "pose", "mmpose-1.x", "hrnet_w32", (256, 192), "coco", "msra", _COCO_AP, 75.7,
        f"{_MMPOSE_V1}/coco/td-hm_hrnet-w32_8xb64-210e_coco-aic-256x192-merge-b05435b9_20221025.pth",
        "b05435b9", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_mpii_256x256",
        "MMPose 0.x HRNet-W32, MPII, 210 epochs",
        "pose", "mmpose-0.x", "hrnet_w32", (256, 256), "mpii", "msra", "MPII val PCKh@0.5", 90.0,
        f"{_MMPOSE_V0}/hrnet_w32_mpii_256x256-6c4f923f_20200812.pth",
        "6c4f923f", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_dark_mpii_256x256",
        "MMPose 0.x HRNet-W32 trained and tested with DARK (unbiased) heatmaps, MPII",
        "pose", "mmpose-0.x", "hrnet_w32", (256, 256), "mpii", "dark", "MPII val PCKh@0.5", 90.4,
        f"{_MMPOSE_V0}/hrnet_w32_mpii_256x256_dark-f1601c5b_20200927.pth",
        "f1601c5b", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_crowdpose_256x192",
        "MMPose 0.x HRNet-W32, CrowdPose trainval, 210 epochs",
        "pose", "mmpose-0.x", "hrnet_w32", (256, 192), "crowdpose", "msra",
        "CrowdPose test AP", 67.5,
        f"{_MMPOSE_V0}/hrnet_w32_crowdpose_256x192-960be101_20201227.pth",
        "960be101", approx_mb=_HRNET_W32_MB,
    ),
    WeightsEntry(
        "hrnet_w32_imagenet",
        "HRNet-W32-C ImageNet classifier, the backbone HRNet's pose recipe starts from",
        "backbone", "imagenet", "hrnet_w32", None, None, None, "ImageNet val top-1", 78.5,
        "https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w32-36af842e.pth",
        "36af842e",
        "MMPose's copy of the HRNet authors' file; the 8 hex digits follow torch.hub's "
        "sha256-prefix naming but no sha256 is published for it. Top-1 from "
        "HRNet-Image-Classification (error 21.5%). Use as model.init_weights=PATH",
    ),
    WeightsEntry(
        "pose_hrnet_w32_256x192",
        "HRNet reference (Sun et al., CVPR 2019) HRNet-W32, COCO",
        "pose", "hrnet", "hrnet_w32", (256, 192), "coco", "msra", _COCO_AP, 74.4,
        _HRNET_DRIVE, None, _HRNET_NOTE.format(size="256x192"),
    ),
    WeightsEntry(
        "pose_hrnet_w32_384x288",
        "HRNet reference (Sun et al., CVPR 2019) HRNet-W32, COCO",
        "pose", "hrnet", "hrnet_w32", (384, 288), "coco", "msra", _COCO_AP, 75.8,
        _HRNET_DRIVE, None, _HRNET_NOTE.format(size="384x288"),
    ),
    WeightsEntry(
        "pose_hrnet_w32_256x256",
        "HRNet reference (Sun et al., CVPR 2019) HRNet-W32, MPII",
        "pose", "hrnet", "hrnet_w32", (256, 256), "mpii", "msra", "MPII val PCKh@0.5", 90.3,
        _HRNET_DRIVE, None, _HRNET_NOTE.format(size="256x256"),
    ),
    WeightsEntry(
        "yolox_tiny_humanart",
        "YOLOX-tiny person detector, COCO + Human-Art (rtmlib's lightweight choice)",
        "detector", "mmdeploy-sdk", "yolox", (416, 416), None, None, _HUMANART_AP, 47.7,
        f"{_RTMPOSE_SDK}/yolox_tiny_8xb8-300e_humanart-6f3252f9.zip",
        "6f3252f9", _HUMANART_NOTE.format(params=5.06), approx_mb=20.0,
        hash_of="checkpoint",
    ),
    WeightsEntry(
        "yolox_m_humanart",
        "YOLOX-m person detector, COCO + Human-Art (rtmlib's balanced choice; ldnet's default)",
        "detector", "mmdeploy-sdk", "yolox", (640, 640), None, None, _HUMANART_AP, 59.1,
        f"{_RTMPOSE_SDK}/yolox_m_8xb8-300e_humanart-c2c7a14a.zip",
        "c2c7a14a", _HUMANART_NOTE.format(params=25.3), approx_mb=100.0,
        hash_of="checkpoint",
    ),
    WeightsEntry(
        "yolox_x_humanart",
        "YOLOX-x person detector, COCO + Human-Art (rtmlib's performance choice)",
        "detector", "mmdeploy-sdk", "yolox", (640, 640), None, None, _HUMANART_AP, 61.3,
        f"{_RTMPOSE_SDK}/yolox_x_8xb8-300e_humanart-a39d44ed.zip",
        "a39d44ed", _HUMANART_NOTE.format(params=99.1), approx_mb=400.0,
        hash_of="checkpoint",
    ),
)  # fmt: skip


def catalog() -> dict[str, WeightsEntry]:
    """The built-in entries, then the site catalogue's (same name: the site's wins)."""
    entries = {entry.name: entry for entry in BUILTIN}
    site = os.environ.get(CATALOG_ENV)
    if site:
        entries.update((entry.name, entry) for entry in read_site_catalog(Path(site)))
    return entries


def find(name: str) -> WeightsEntry | None:
    return catalog().get(name)


def lookup(name: str) -> WeightsEntry:
    entry = find(name)
    if entry is None:
        raise CatalogError(f"unknown weights name {name!r}; see ldnet weights list")
    return entry


def read_site_catalog(path: Path) -> list[WeightsEntry]:
    """Entries from a site's JSON file (a list of objects), each checked field by field."""
    where = f"{path} (${CATALOG_ENV})"
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CatalogError(f"{where}: not a readable JSON file ({error})") from None
    if not isinstance(items, list):
        found = type(items).__name__
        raise CatalogError(f"{where}: expected a JSON list of entries, found {found}")
    return [_entry_from_json(item, f"{where} entry {index}") for index, item in enumerate(items)]


def _entry_from_json(item, where: str) -> WeightsEntry:
    if not isinstance(item, dict):
        raise CatalogError(f"{where}: expected an object, found {type(item).__name__}")
    known = {field.name for field in fields(WeightsEntry)}
    unknown = sorted(set(item) - known - {"downloadable"})
    if unknown:
        raise CatalogError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(known)})")
    # A site entry is a pose network unless it says otherwise; a detector an SDK archive.
    kind = item.get("kind", "pose")
    layout = "mmdeploy-sdk" if kind == "detector" else "mmpose-1.x"
    values = {"kind": kind, "layout": layout, "note": "", "hash_of": "file", **item}
    values.pop("downloadable", None)
    for required in ("name", "description", "model", "metric", "published", "url", "sha256"):
        if required not in values:
            raise CatalogError(f"{where}: missing field {required!r}")
    if values.get("input_size") is not None:
        size = values["input_size"]
        if not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)
        ):
            raise CatalogError(f"{where}: input_size must be [height, width], got {size!r}")
        values["input_size"] = tuple(size)
    entry = WeightsEntry(**{key: values.get(key) for key in known})
    problem = entry_problem(entry)
    if problem:
        raise CatalogError(f"{where} ({entry.name!r}): {problem}")
    return entry


def entry_problem(entry: WeightsEntry) -> str | None:
    """What is wrong with an entry, or None. Site entries may use http (a local mirror)."""
    from ldnet.models import PRESETS

    if not isinstance(entry.name, str) or not _NAME.fullmatch(entry.name):
        return "name: a letter or digit, then letters, digits, '_', '.', '-' (it names files)"
    if entry.kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}, got {entry.kind!r}"
    if entry.layout not in LAYOUTS:
        return f"layout must be one of {', '.join(LAYOUTS)}, got {entry.layout!r}"
    if entry.kind == "detector":
        if entry.model not in DETECTOR_MODELS:
            return f"a detector's model must be one of {', '.join(DETECTOR_MODELS)}"
        if entry.layout not in DETECTOR_LAYOUTS:
            return f"a detector's layout must be one of {', '.join(DETECTOR_LAYOUTS)}"
        if entry.input_size is None:
            return "a detector entry needs input_size [height, width] (its network input)"
    elif entry.layout in DETECTOR_LAYOUTS:
        return f"layout {entry.layout!r} is for detectors (kind detector)"
    elif entry.model not in PRESETS:
        return f"model {entry.model!r} is not an ldnet preset"
    if entry.kind == "pose":
        from ldnet.datasets import DATASETS

        if entry.input_size is None or entry.dataset not in DATASETS:
            return f"a pose entry needs input_size and dataset ({', '.join(DATASETS)})"
        if entry.decoder not in DECODERS:
            return f"decoder must be one of {', '.join(DECODERS)}, got {entry.decoder!r}"
    if urlsplit(str(entry.url)).scheme not in ("http", "https"):
        return f"url must be http(s), got {entry.url!r}"
    if entry.sha256 is not None and not _HEX_PREFIX.fullmatch(str(entry.sha256)):
        return f"sha256 must be 8 to 64 lowercase hex digits, got {entry.sha256!r}"
    if not isinstance(entry.published, (int, float)):
        return f"published must be a number, got {entry.published!r}"
    if entry.hash_of not in HASH_OF:
        return f"hash_of must be one of {', '.join(HASH_OF)}, got {entry.hash_of!r}"
    if entry.hash_of == "checkpoint" and entry.kind != "detector":
        return "hash_of 'checkpoint' is for detector archives only"
    if entry.approx_mb is not None and not (
        isinstance(entry.approx_mb, (int, float)) and entry.approx_mb > 0
    ):
        return f"approx_mb must be a positive number, got {entry.approx_mb!r}"
    return None
