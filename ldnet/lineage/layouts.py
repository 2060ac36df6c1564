"""Reading a weights file of the HRNet lineage safely and telling which layout it is.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint downloaded from the
internet is a pickle, and the safe unpickler is what stops it from running code. MMPose 1.x
files (mmengine) keep numpy arrays and scalars in their ``meta`` (the dataset's sigmas and
colours, the seed); those load through an explicit allow-list of numpy's array, dtype and
scalar reconstructors, nothing more.

Layouts, after an optional ``module.`` prefix (a DistributedDataParallel wrapper):

- ``hrnet``: the HRNet reference's state dict (``conv1.weight``, ``layer1.0.conv1.weight``,
  ``transition1...``, ``stage2...``, ``final_layer.weight``);
- ``mmpose-0.x``: ``{"state_dict": ...}`` with ``backbone.`` + ``keypoint_head.final_layer.``;
- ``mmpose-1.x``: ``{"state_dict", "meta"}`` with ``backbone.`` + ``head.final_layer.``;
- ``imagenet``: the classification backbone (``hrnet_w32-36af842e.pth``): the same backbone
  names plus ``incre_modules``, ``downsamp_modules``, ``final_layer.0`` and ``classifier``;
- ``ldnet-official``: what the official LDNet code (``NBU-CVMI/LDNet``, a fork of the HRNet
  reference) writes: ``final_state.pth`` / ``model_best.pth`` (a bare state dict) or
  ``checkpoint.pth`` (``{"epoch", "model", "state_dict", "best_state_dict", "perf",
  "optimizer"}``, its ``state_dict`` with DataParallel's ``module.`` prefix); names
  ``stem.conv1``, ``stage2...``, ``prm...``, ``final_layer`` (``ldnet_names``);
- ``ldnet``: a checkpoint written by ``ldnet train`` / ``ldnet weights import`` (or a bare
  state dict in our names: ``stem.``, ``stages.``, ``head.``).

The official LDNet's stem shares its prefix with ours (``stem.``): names decide between the
two only through the official tensors ours never have (``ldnet_names.MARKERS``) and ours
that the official never has (``stages.``); the record, when there is one, decides first.
Foreign layouts come out with the reference's names, so one name map serves each family.
"""

from __future__ import annotations

import contextlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldnet.checkpoint import CheckpointError

from .ldnet_names import is_official_ldnet

# Whatever numpy objects an mmengine ``meta`` holds: arrays (``_reconstruct`` + ``ndarray``),
# their dtypes, and numpy scalars. Files written with numpy 1.x name the reconstructors under
# ``numpy.core``, numpy 2 under ``numpy._core``; both names are allowed for the same function.
_MULTIARRAY = (getattr(np, "_core", None) or np.core).multiarray  # numpy 2 | numpy 1
_NUMPY_SAFE_GLOBALS = [
    np.ndarray,
    np.dtype,
    _MULTIARRAY._reconstruct,
    (_MULTIARRAY._reconstruct, "numpy.core.multiarray._reconstruct"),
    _MULTIARRAY.scalar,
    (_MULTIARRAY.scalar, "numpy.core.multiarray.scalar"),
    # numpy >= 1.25 may pickle a dtype by its class (numpy.dtypes.Float32DType, ...).
    *(type(np.dtype(code)) for code in "?bhilqBHILQefdgFDGUS"),
]

LAYOUT_NAMES = {
    "hrnet": "an official HRNet state dict",
    "mmpose-0.x": "an MMPose 0.x checkpoint",
    "mmpose-1.x": "an MMPose 1.x checkpoint",
    "imagenet": "the ImageNet classification HRNet backbone",
    "ldnet-official": "an official LDNet checkpoint",
    "ldnet": "an ldnet checkpoint",
}
# Modules of the ImageNet classification network that a pose network has no place for.
CLASSIFICATION_MODULES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
# ...of which these are found in no pose network (``final_layer`` is, as the heatmap layer).
_CLASSIFICATION_ONLY = ("incre_modules.", "downsamp_modules.", "classifier.")
_POSE = ("hrnet", "mmpose-0.x", "mmpose-1.x")
_MMPOSE_HEADS = {"keypoint_head.": "mmpose-0.x", "head.": "mmpose-1.x"}


@dataclass(frozen=True)
class WeightsFile:
    """A weights file read and recognised. ``state`` is in the reference's names (for
    foreign layouts) or ours (``ldnet``); ``data`` is what the file holds."""

    layout: str
    wrapped: bool  # saved from a DistributedDataParallel wrapper (``module.`` prefix)
    state: dict[str, torch.Tensor]
    data: dict

    @property
    def description(self) -> str:
        return LAYOUT_NAMES[self.layout] + (" (DDP-wrapped)" if self.wrapped else "")

    @property
    def layout_tag(self) -> str:
        """The layout as a short tag for the provenance record (e.g. ``mmpose-1.x+ddp``)."""
        return self.layout + ("+ddp" if self.wrapped else "")


def read_file(path: str | Path) -> dict:
    """The file's contents, read with ``weights_only=True`` (numpy allowed as above)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with _numpy_allowed():
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", str(error))
        if unsafe:
            raise CheckpointError(
                f"{path}: not a readable checkpoint: an unsafe pickle holding "
                f"{unsafe.group(1)}, which weights have no need of (loading it could run code)"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({_reason(error)})") from None
    except Exception as error:  # arbitrary bytes fail anywhere in the unpickler (IndexError...)
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(error)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint (expected a dict, found a {type(data).__name__})"
        )
    return data


def _numpy_allowed():
    """The allow-list, where this PyTorch has one (2.5+); older ones read no numpy at all."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    return safe_globals(_NUMPY_SAFE_GLOBALS) if safe_globals else contextlib.nullcontext()


def recognise(data: dict, source: str) -> WeightsFile:
    """Which layout ``data`` (a file's contents) is, with its weights in the layout's names."""
    if isinstance(data.get("model"), dict):  # our record: read (and checked) by the caller
        state = data.get("state_dict")
        return WeightsFile("ldnet", False, state if isinstance(state, dict) else {}, data)
    state = data.get("state_dict", data)
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: not a checkpoint (no state dict among {_keys(data)})")
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(
            f"{source}: not a checkpoint (its state dict holds more than tensors)"
        )
    wrapped = all(name.startswith("module.") for name in state)
    if wrapped:
        state = {name.removeprefix("module."): tensor for name, tensor in state.items()}

    if any(name.startswith("backbone.") for name in state):
        return _mmpose(state, wrapped, data, source)
    if any(name.startswith(_CLASSIFICATION_ONLY) for name in state):
        return WeightsFile("imagenet", wrapped, state, data)
    if "conv1.weight" in state and any(name.startswith("stage2.") for name in state):
        return WeightsFile("hrnet", wrapped, state, data)
    if is_official_ldnet(state):
        return WeightsFile("ldnet-official", wrapped, state, data)
    if any(name.startswith("stages.") for name in state):
        # Ours, without the record: ``model.init_weights`` takes it, ``load_model`` does not.
        return WeightsFile("ldnet", False, data.get("state_dict", data), data)
    raise CheckpointError(
        f"{source}: not an HRNet-lineage checkpoint: expected official HRNet names (conv1, "
        f"layer1, stage2, final_layer), official LDNet's (stem.conv1, stage2, prm, "
        f"final_layer), MMPose's (backbone., head.) or an ldnet checkpoint; found "
        f"{_keys(state)}"
    )


def as_layout(official: dict[str, torch.Tensor], layout: str, wrapped: bool = False) -> dict:
    """The inverse of ``recognise`` for a pose network: weights in the reference's names as
    the file contents of ``layout`` ("hrnet", "mmpose-0.x", "mmpose-1.x"), optionally
    DDP-wrapped. It writes the reference's weights in each layout for the parity check
    (``tools/check_hrnet_reference.py``) and the tests; MMPose's ``meta`` is the caller's.

    ``"ldnet-official"`` is what the official LDNet code writes: unwrapped, the bare state
    dict of ``final_state.pth`` / ``model_best.pth``; wrapped, the training checkpoint
    (``checkpoint.pth``: the epoch, the model's name, the DataParallel state dict with its
    ``module.`` prefix, the bare best state dict, the best AP, Adam's state before its first
    step)."""
    if layout == "ldnet-official":
        return _official_ldnet(official) if wrapped else dict(official)
    if layout == "hrnet":
        state = dict(official)
    elif layout in ("mmpose-0.x", "mmpose-1.x"):
        head = "keypoint_head." if layout == "mmpose-0.x" else "head."
        state = {
            (head if name.startswith("final_layer.") else "backbone.") + name: tensor
            for name, tensor in official.items()
        }
    else:
        raise ValueError(
            f"no pose-network layout {layout!r}; choose from {', '.join(_POSE)}, ldnet-official"
        )
    if wrapped:
        state = {"module." + name: tensor for name, tensor in state.items()}
    return state if layout == "hrnet" else {"state_dict": state}


def _official_ldnet(official: dict[str, torch.Tensor]) -> dict:
    """The official training code's ``checkpoint.pth`` (HRNet's ``save_checkpoint`` states)."""
    adam = {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False}
    parameters = [name for name in official if not name.endswith(_BUFFERS)]
    return {
        "epoch": 210,
        "model": "dysmallnet_spattention",
        "state_dict": {"module." + name: tensor for name, tensor in official.items()},
        "best_state_dict": dict(official),
        "perf": 0.713,
        "optimizer": {
            "state": {},
            "param_groups": [{**adam, "params": list(range(len(parameters)))}],
        },
    }


_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _mmpose(state: dict, wrapped: bool, data: dict, source: str) -> WeightsFile:
    """Backbone names as the reference's; the head's 1x1 convolution as ``final_layer``."""
    heads = {prefix for prefix in _MMPOSE_HEADS if any(name.startswith(prefix) for name in state)}
    if len(heads) != 1:
        found = ", ".join(sorted(heads)) or "neither"
        raise CheckpointError(
            f"{source}: an MMPose backbone with expected one head, keypoint_head. (0.x) or "
            f"head. (1.x); found {found}"
        )
    (head,) = heads
    official = {}
    for name, tensor in state.items():
        if name.startswith("backbone."):
            official[name.removeprefix("backbone.")] = tensor
        elif name.startswith(head + "final_layer."):
            official[name.removeprefix(head)] = tensor
        else:
            raise CheckpointError(
                f"{source}: expected an HRNet heatmap head ({head}final_layer only), found {name}"
            )
    return WeightsFile(_MMPOSE_HEADS[head], wrapped, official, data)


def _keys(mapping: dict) -> str:
    names = list(mapping)
    shown = ", ".join(str(name) for name in names[:4])
    return f"{shown}{', ...' if len(names) > 4 else ''}" if names else "no keys"


def _reason(error: pickle.UnpicklingError) -> str:
    """The unpickler's own reason, out of the paragraphs torch wraps it in."""
    advice = ("Weights only load failed", "Check the documentation", "Please file an issue", "(")
    for line in str(error).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(advice):
            return line
    return _first_line(error)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
