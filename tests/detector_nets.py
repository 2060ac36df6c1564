"""ONNX detectors built here with the input and outputs of MMDeploy's YOLOX end2end export
(the catalogue's ``yolox_*_humanart`` files): input ``input`` float32 (1, 3, H, W), outputs
``dets`` float32 (1, N, 5) ``x1, y1, x2, y2, score`` in input pixels and ``labels`` int64
(1, N). Their boxes are known, so the pre- and post-processing around them can be checked
to the pixel."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

BLUE_BGR = (255, 0, 0)


def constant_yolox(
    path: Path, dets: np.ndarray, labels: np.ndarray, input_hw=(640, 640), dynamic=False
) -> Path:
    """Outputs ``dets`` (N, 5) and ``labels`` (N,) whatever the image (plus 0 x the input,
    so the input is used)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dets = np.asarray(dets, np.float32).reshape(1, -1, 5)
    labels = np.asarray(labels, np.int64).reshape(1, -1)
    nodes = [
        helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["dets_constant", "nothing"], ["dets"]),
        helper.make_node("Identity", ["labels_constant"], ["labels"]),
    ]
    height, width = ("height", "width") if dynamic else input_hw
    count = dets.shape[1]
    graph = helper.make_graph(
        nodes,
        "yolox_end2end_stand_in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
        [
            helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, count, 5]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, count]),
        ],
        [
            numpy_helper.from_array(dets, "dets_constant"),
            numpy_helper.from_array(labels, "labels_constant"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class BlueBoxFinder(torch.nn.Module):
    """One 'person': the bounding box of the pure-blue pixels of a BGR, 0-255 input (blue
    channel first and above 127, the others below), score 0.9, label 0. Fed RGB or [0, 1]
    values, it finds nothing, so it also checks the channel order and the scaling."""

    def forward(self, image):
        blue = (image[:, 0] > 127) & (image[:, 1] < 127) & (image[:, 2] < 127)
        mask = blue.float()[0]  # (H, W)
        columns, rows = mask.amax(dim=0), mask.amax(dim=1)
        # cumsum - 1 counts 0, 1, 2, ... without a fixed size, so H and W may be dynamic.
        xs = torch.cumsum(torch.ones_like(columns), 0) - 1
        ys = torch.cumsum(torch.ones_like(rows), 0) - 1
        far = 1e6
        x1 = torch.where(columns > 0, xs, far).min()
        y1 = torch.where(rows > 0, ys, far).min()
        x2 = torch.where(columns > 0, xs, -far).max() + 1
        y2 = torch.where(rows > 0, ys, -far).max() + 1
        score = 0.9 * columns.max()
        dets = torch.stack([x1, y1, x2, y2, score]).reshape(1, 1, 5)
        labels = torch.zeros((1, 1), dtype=torch.int64) + (score * 0).long()
        return dets, labels


def blue_box_yolox(path: Path, input_hw=(416, 416)) -> Path:
    import warnings

    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            BlueBoxFinder(),
            (torch.zeros(1, 3, *input_hw),),
            str(path),
            input_names=["input"],
            output_names=["dets", "labels"],
            opset_version=17,
            dynamo=False,
        )
    return path


def sdk_archive(onnx_path: Path, folder: str = "yolox_stand_in") -> bytes:
    """The file as OpenMMLab publishes it: a zip of MMDeploy's SDK folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}/deploy.json", '{"version": "1.3.1"}')
        archive.writestr(f"{folder}/pipeline.json", '{"pipeline": {}}')
        archive.writestr(f"{folder}/detail.json", "{}")
        archive.write(onnx_path, f"{folder}/end2end.onnx")
    return buffer.getvalue()
