"""Weights files -> a network and its record: training checkpoints and exported ONNX files."""

from __future__ import annotations

from pathlib import Path

import torch

from ldnet.checkpoint import CheckpointError, load_weights_strict
from ldnet.models.record import ModelRecord, record_from_checkpoint, record_from_metadata


def load_model(
    path: str | Path,
    expect_dataset: str | None = None,
    *,
    model: str | None = None,
    input_size: tuple[int, int] | None = None,
    decoder: str | None = None,
) -> tuple[torch.nn.Module, ModelRecord]:
    """Eval-mode network and its record from a checkpoint (read ``weights_only``).

    ``expect_dataset`` / ``model`` name what the caller needs; weights for another joint set
    or architecture stop with one line saying so. An official HRNet, MMPose or LDNet file is
    imported in memory (as ``ldnet weights import``) when ``model`` and ``input_size`` say
    what it is, with ``decoder`` (default: HRNet's msra) in its record."""
    from ldnet.lineage.importer import import_weights, what_to_add
    from ldnet.lineage.layouts import read_file, recognise

    source = str(path)
    weights = recognise(read_file(path), source)
    if weights.layout == "ldnet":
        data = weights.data
        record = record_from_checkpoint(data, source).check(
            source, dataset=expect_dataset, model=model
        )
        network = record.build_network()  # at the recorded attention temperature
        return load_weights_strict(network, data, source, record.model).eval(), record
    if model is None or input_size is None:
        raise CheckpointError(what_to_add(weights, source))
    state, record, _ = import_weights(
        weights,
        Path(path),
        model=model,
        input_size=input_size,
        dataset=expect_dataset,
        decoder=decoder,
    )
    network = record.build_network()
    network.load_state_dict(state, strict=True)
    return network.eval(), record


def record_from_onnx(path: str | Path, expect_dataset: str | None = None) -> ModelRecord:
    """The record an ``ldnet export onnx`` file carries in its metadata."""
    from ldnet.deploy.export import read_metadata

    source = str(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{source}: no such ONNX file")
    try:
        meta = read_metadata(path)
    except Exception as error:  # onnx raises protobuf's DecodeError and others
        raise CheckpointError(f"{source}: not a readable ONNX file ({error})") from None
    return record_from_metadata(meta, source).check(source, dataset=expect_dataset)
