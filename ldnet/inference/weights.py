"""Weights files -> a network and its record: training checkpoints and exported ONNX files."""

from __future__ import annotations

from pathlib import Path

import torch

from ldnet.checkpoint import CheckpointError, load_checkpoint, load_weights_strict
from ldnet.models import build_model

from .record import ModelRecord, record_from_checkpoint, record_from_metadata


def load_model(
    path: str | Path, expect_dataset: str | None = None, *, model: str | None = None
) -> tuple[torch.nn.Module, ModelRecord]:
    """Eval-mode network and its record from a training checkpoint (read ``weights_only``).

    ``expect_dataset`` / ``model`` name what the caller needs; weights for another joint set
    or architecture stop with one line saying so."""
    source = str(path)
    data = load_checkpoint(path)
    record = record_from_checkpoint(data, source).check(source, dataset=expect_dataset, model=model)
    network = build_model(record.model, record.num_joints)
    return load_weights_strict(network, data, source, record.model).eval(), record


def record_from_onnx(path: str | Path, expect_dataset: str | None = None) -> ModelRecord:
    """The record an ``ldnet export onnx`` file carries in its metadata."""
    from ldnet.export import read_metadata

    source = str(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{source}: no such ONNX file")
    try:
        meta = read_metadata(path)
    except Exception as error:  # onnx raises protobuf's DecodeError and others
        raise CheckpointError(f"{source}: not a readable ONNX file ({error})") from None
    return record_from_metadata(meta, source).check(source, dataset=expect_dataset)
