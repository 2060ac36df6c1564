"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so the safe
unpickler can read it and a file from an untrusted source cannot run code. It names the
architecture and joint set so a model can be rebuilt from it without guessing.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from ldnet.errors import LDNetError
from ldnet.files import atomic_path

FORMAT = "ldnet-checkpoint-1"


class CheckpointError(LDNetError, ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over
    ``path``: a crash at any point leaves either the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        torch.save(obj, file)
        file.flush()
        os.fsync(file.fileno())
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint (or a bare state dict) safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(data).__name__}")
    return data


def model_state(data: dict) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint, or the dict itself if it is a bare state dict."""
    state = data.get("state_dict", data)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("checkpoint holds no model state dict")
    # Weights saved from a DistributedDataParallel wrapper carry a "module." prefix.
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights_strict(model: nn.Module, data: dict, source: str, name: str) -> nn.Module:
    """All of the checkpoint's weights into ``model`` (preset ``name``), or one line saying
    why they do not fit."""
    try:
        model.load_state_dict(model_state(data), strict=True)
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        joints = model.spec.num_joints
        raise CheckpointError(
            f"{source}: weights do not fit model {name!r} with {joints} joints ({detail})"
        ) from None
    return model


def load_initial_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load whatever matches (name and shape) from ``path`` into ``model``.

    ``path`` is an ldnet checkpoint (or a bare state dict of ours), or, for ``hrnet_w32``, a
    file of the HRNet lineage: the ImageNet classification backbone
    (``hrnet_w32-36af842e.pth``, as HRNet's recipe starts from), an official HRNet or an
    MMPose pose checkpoint, translated to our names first; for the LDNet presets, a file
    of the official LDNet code (``final_state.pth``, ``checkpoint.pth``), likewise.

    Returns the report: ``matched``, ``missing`` (in the model, not in the file),
    ``unexpected`` (in the file, not in the model), ``mismatched`` (shape differs) and
    ``skipped`` (the classification network's own modules, which a pose network has no place
    for: ``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``).
    """
    from ldnet.lineage.layouts import read_file, recognise

    weights = recognise(read_file(path), str(path))
    if weights.layout == "ldnet":
        state, skipped = model_state(weights.data), []
    else:
        from ldnet.lineage.importer import backbone_in_our_names

        state, skipped = backbone_in_our_names(weights, model, str(path))
    own = model.state_dict()
    matched = [k for k in state if k in own and own[k].shape == state[k].shape]
    report = {
        "matched": matched,
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
        "mismatched": [k for k in state if k in own and own[k].shape != state[k].shape],
        "skipped": skipped,
    }
    if not matched:
        raise CheckpointError(f"{path}: no weight matches this model (another architecture?)")
    model.load_state_dict({k: state[k] for k in matched}, strict=False)
    return report


def describe_initial_weights(path: str | Path, report: dict[str, list[str]]) -> str:
    """The report as one line: counts, then what was skipped and what was not found."""
    counts = ", ".join(
        f"{len(report[key])} {key}" for key in ("matched", "missing", "unexpected", "mismatched")
    )
    line = f"initial weights {path}: {counts}"
    skipped = sorted({name.split(".")[0] for name in report.get("skipped", [])})
    if skipped:
        line += f"; skipped the classification modules {', '.join(skipped)}"
    if report["missing"]:
        line += f"; not in the file: {_modules(report['missing'])}"
    if report["unexpected"]:
        line += f"; not in the model: {_modules(report['unexpected'])}"
    return line


def _modules(names: list[str]) -> str:
    """Tensor names folded to their modules (``head.final.weight`` -> ``head.final``)."""
    modules = list(dict.fromkeys(name.rsplit(".", 1)[0] for name in names))
    shown = ", ".join(modules[:6])
    return shown + (f" and {len(modules) - 6} more" if len(modules) > 6 else "")
