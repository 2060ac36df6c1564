"""ONNX export of a pose network (heatmaps out; decoding stays outside the graph)."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .models.ldconv import set_ldconv_execution


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: tuple[int, int] = (256, 192),
    opset: int = 17,
) -> Path:
    """Write ``model`` as ONNX with a dynamic batch dimension: images (B, 3, H, W) ->
    heatmaps (B, J, H/4, W/4).

    ONNX's Conv has a fixed group count, so the per-sample "aggregate" execution of LDConv
    (batch folded into the groups) cannot have a dynamic batch; the export uses the
    equivalent "mixture" execution. The file is written next to ``path`` and renamed into
    place, so a failed export leaves nothing behind.
    """
    path = Path(path)
    exportable = set_ldconv_execution(copy.deepcopy(model).eval(), "mixture")
    images = torch.zeros(2, 3, *input_size)
    partial = path.with_name(path.name + ".partial")
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of torch.export, but it
            # is ten times faster here and needs no extra dependency (onnxscript).
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                exportable,
                (images,),
                str(partial),
                input_names=["images"],
                output_names=["heatmaps"],
                dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
