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
