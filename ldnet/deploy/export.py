"""ONNX export of a pose network (heatmaps out; decoding stays outside the graph).

The graph maps normalised crops to heatmaps and nothing more: cropping, flip test,
``codec.decode`` (argmax + sub-pixel refinement) and the map back to image pixels stay in
Python, because they are data dependent (argmax, per-person affine maps) and cheap. Whatever
runs the file must reproduce them; ``ldnet.predict.PoseEstimator`` does.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from ldnet.files import atomic_path
from ldnet.models.fuse import fuse_for_inference
from ldnet.models.ldconv import set_ldconv_execution

INPUT_NAME, OUTPUT_NAME = "images", "heatmaps"
# Keys of the ONNX metadata_props that let a runtime rebuild the pre/post-processing.
METADATA_PREFIX = "ldnet."


def exportable_model(model: nn.Module, fixed_batch: bool = False) -> nn.Module:
    """An eval-mode copy with BatchNorm folded and every LDConv in its exportable form.

    ONNX's Conv has a fixed group count, so the per-sample "aggregate" execution of LDConv
    (batch folded into the groups) cannot have a dynamic batch: a dynamic-batch graph uses
    the equivalent "mixture" execution (the K kernels as one static convolution, outputs
    mixed per sample), a fixed-batch graph the "aggregate" one (each sample's kernel mixed
    in the graph: a quarter of the mixture's multiply-adds).
    """
    execution = "aggregate" if fixed_batch else "mixture"
    return set_ldconv_execution(fuse_for_inference(copy.deepcopy(model)), execution)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: tuple[int, int] = (256, 192),
    opset: int = 17,
    metadata: dict[str, str] | None = None,
    batch: int | None = None,
) -> Path:
    """Write ``model`` as ONNX: ``images`` (B, 3, H, W), ImageNet-normalised RGB crops ->
    ``heatmaps`` (B, J, H/4, W/4), with a dynamic batch dimension, or B fixed to ``batch``
    (a faster graph that only runs that batch size; see ``exportable_model``).

    ``metadata`` is stored as ``metadata_props`` (keys prefixed ``ldnet.``). The file is
    written next to ``path`` and renamed into place, so a failed export leaves nothing behind.
    """
    path = Path(path)
    if batch is not None and batch < 1:
        raise ValueError(f"batch size must be at least 1, got {batch}")
    exportable = exportable_model(model, fixed_batch=batch is not None)
    images = torch.zeros(batch or 2, 3, *input_size)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch is None else None
    with atomic_path(path) as partial:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of torch.export, but it
            # is ten times faster here and needs no extra dependency (onnxscript).
            warnings.simplefilter("ignore", DeprecationWarning)
            # The tracer flags the Python branches of PoseNet.forward (all_outputs); they
            # depend on arguments, not on tensor values, so the traced graph is right.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                exportable,
                (images,),
                str(partial),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                dynamo=False,
            )
        if metadata:
            _add_metadata(partial, metadata)
    return path


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, str(value)
    onnx.save(proto, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``ldnet.*`` metadata of an exported file (prefix removed); {} if it has none."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {
        entry.key.removeprefix(METADATA_PREFIX): entry.value
        for entry in proto.metadata_props
        if entry.key.startswith(METADATA_PREFIX)
    }
