"""`ldnet export onnx --int8 --calibration DIR`: ONNX Runtime static quantization calibrated on
real COCO-MINI person crops, its record, `ldnet predict` on the int8 file, and
the bad-input list.

CI's gate is looser than the README's: no trained checkpoint is at hand here (training one
costs minutes), so instead of "AP change <= 0.01" (measured on the demo's and the COCO-MINI
memorisation checkpoints, README "int8") CI checks the quantization's fidelity on held-out real
crops: the int8 heatmaps stay within 10 % of the float graph's peak (random weights' heatmaps
are flat, so their maxima would not test the decoding of a trained model's peaks).
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ldnet.checkpoint import atomic_save
from ldnet.cli import main
from ldnet.config import config_from_dict
from ldnet.data.dataset import prepare_crops
from ldnet.data.images import read_image
from ldnet.data.transforms import PIXEL_STD, box_to_center_scale
from ldnet.engine.train import checkpoint_payload
from ldnet.export import read_metadata
from ldnet.inference import load_model
from ldnet.inference.backends import onnx_session
from ldnet.models import build_model
from ldnet.predict import PoseEstimator

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VAL2017 = SHARED / "coco-mini" / "images" / "val2017"
VAL_ANN = SHARED / "coco-mini" / "annotations" / "person_keypoints_val2017.json"
SIZE = (64, 64)
FIDELITY_BOUND = 0.10  # max |int8 - float| heatmap difference, as a fraction of the float peak


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def only_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line]
    assert len(lines) == 1, text
    return lines[0]


def person_boxes() -> dict[int, list[list[float]]]:
    """Ground-truth person boxes of COCO-MINI val2017 by image id (people with joints)."""
    annotations = json.loads(VAL_ANN.read_text())["annotations"]
    boxes: dict[int, list[list[float]]] = {}
    for entry in annotations:
        if entry.get("num_keypoints", 0) > 0 and not entry.get("iscrowd", 0):
            boxes.setdefault(entry["image_id"], []).append(entry["bbox"])
    return boxes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = config_from_dict(
        {"model": {"name": "ldnet_s"}, "data": {"dataset": "coco", "input_size": list(SIZE)}}
    )
    model = build_model("ldnet_s", 17)
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    path = tmp_path_factory.mktemp("weights") / "ldnet_s.pt"
    return atomic_save(checkpoint_payload(config, model, optimizer, scaler, 1, 10, 0.0), path)


@pytest.fixture(scope="module")
def split_images():
    """Six val2017 images with people to calibrate on, four others held out."""
    boxes = person_boxes()
    ids = sorted(boxes)
    return ids[:6], ids[6:10], boxes


def image_path(image_id: int) -> Path:
    return VAL2017 / f"{image_id:012d}.jpg"


@pytest.fixture(scope="module")
def int8_export(checkpoint, split_images, tmp_path_factory):
    """The int8 file, calibrated on six images with their person boxes plus a broken file."""
    calibration_ids, _, boxes = split_images
    folder = tmp_path_factory.mktemp("calibration")
    for image_id in calibration_ids:
        (folder / image_path(image_id).name).symlink_to(image_path(image_id))
    (folder / "000000000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    detections = folder.parent / "detections.json"
    rows = [
        {"image_id": image_id, "category_id": 1, "bbox": box, "score": 1.0}
        for image_id in calibration_ids
        for box in boxes[image_id]
    ]
    detections.write_text(json.dumps(rows))
    output = folder.parent / "model_int8.onnx"
    notes = io.StringIO()
    with contextlib.redirect_stderr(notes):
        code = main(
            [
                "export", "onnx", "--weights", str(checkpoint), "--output", str(output),
                "--int8", "--calibration", str(folder), "--calibration-detections",
                str(detections),
            ]
        )  # fmt: skip
    assert code == 0
    assert "skipped 1 unreadable calibration image(s): 000000000001.jpg" in notes.getvalue()
    return output, len(rows)


@pytest.fixture(scope="module")
def float_export(checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("float") / "model.onnx"
    assert main(["export", "onnx", "--weights", str(checkpoint), "--output", str(path)]) == 0
    return path


def held_out_crops(split_images) -> np.ndarray:
    _, held_out_ids, boxes = split_images
    crops = [
        prepare_crops(read_image(image_path(i)), np.array(boxes[i]), SIZE)[0] for i in held_out_ids
    ]
    return np.concatenate(crops)


def relative_error(int8_path: Path, float_path: Path, crops: np.ndarray) -> float:
    (expected,) = onnx_session(float_path, 1).run(None, {"images": crops})
    (heatmaps,) = onnx_session(int8_path, 1).run(None, {"images": crops})
    return float(np.abs(heatmaps - expected).max() / np.abs(expected).max())


def test_int8_file_is_quantized_and_carries_the_record(int8_export, checkpoint, split_images):
    path, people = int8_export
    graph = onnx.load(str(path)).graph
    # QDQ form: every convolution reads int8 weights through a DequantizeLinear, per channel.
    dequantized = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert convolutions and all(node.input[1] in dequantized for node in convolutions)
    scales = {tensor.name: tensor.dims for tensor in graph.initializer}
    assert all(scales[dequantized[node.input[1]].input[1]][0] > 1 for node in convolutions)
    meta = read_metadata(path)
    record = load_model(checkpoint)[1].to_metadata()
    assert {key: meta[key] for key in record} == record
    assert meta["precision"] == "int8"
    calibration_ids = split_images[0]
    assert meta["calibration"].startswith(
        f"minmax, {2 * people} crops (mirrored included) of {len(calibration_ids)} images"
    )


def test_int8_heatmaps_stay_close_to_float_on_held_out_crops(
    int8_export, float_export, split_images
):
    """CI's looser gate (see the module docstring)."""
    path, _ = int8_export
    crops = held_out_crops(split_images)
    assert relative_error(path, float_export, crops) < FIDELITY_BOUND


def test_predict_runs_the_int8_file(int8_export, float_export, split_images, tmp_path, capsys):
    path, _ = int8_export
    image_id = split_images[1][0]
    image = image_path(image_id)
    # A held-out person's box: the crops the file was calibrated for (person boxes) and the
    # ones the fidelity bound is stated for. (A whole-image crop is another distribution;
    # README "int8": whole-image calibration and use lose more.)
    box = np.array(split_images[2][image_id][0], dtype=float)
    out = tmp_path / "predicted"
    code, stdout, err = run_cli(
        capsys, "predict", image, "--weights", path, "--output", out,
        "--box", ",".join(f"{value:g}" for value in box), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    (row,) = json.loads((out / "results.json").read_text())
    assert row["image_id"] == image_id
    points = np.array(row["keypoints"]).reshape(17, 3)
    # Every joint lies in the box's (padded) crop, as PoseEstimator puts it, and the
    # confidences (heatmap maxima, flip-averaged) are the float file's within the fidelity
    # bound.
    image_bgr = read_image(image)
    center, scale = box_to_center_scale(box, SIZE)
    half_extent_px = scale * PIXEL_STD / 2 + 1
    assert np.all(np.abs(points[:, :2] - center) <= half_extent_px)
    int8_estimator, float_estimator = (
        PoseEstimator.from_weights(path),
        PoseEstimator.from_weights(float_export),
    )
    int8_poses = int8_estimator(image_bgr, box[None])
    np.testing.assert_allclose(points[:, :2], int8_poses.keypoints[0, :, :2], atol=0.01)
    crops = prepare_crops(image_bgr, box[None], SIZE)[0]
    peak = np.abs(float_estimator.heatmaps(crops)).max()
    float_confidences = float_estimator(image_bgr, box[None]).keypoints[0, :, 2]
    np.testing.assert_allclose(
        int8_poses.keypoints[0, :, 2], float_confidences, atol=FIDELITY_BOUND * peak
    )


# -- bad input: one line naming the problem, exit 2 -----------------------------------------


def test_int8_and_calibration_go_together(checkpoint, tmp_path, capsys):
    output = tmp_path / "model.onnx"
    base = ("export", "onnx", "--weights", checkpoint, "--output", output)
    code, _, err = run_cli(capsys, *base, "--int8")
    assert code == 2 and "--int8 needs --calibration DIR" in only_line(err)
    code, _, err = run_cli(capsys, *base, "--calibration", tmp_path)
    assert code == 2 and "--calibration goes with --int8" in only_line(err)
    code, _, err = run_cli(capsys, *base, "--int8", "--calibration", tmp_path / "missing")
    assert code == 2 and "calibration folder not found" in only_line(err)
    assert not output.exists()


def test_no_readable_calibration_image_stops(checkpoint, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"\x89PNG not really")
    output = tmp_path / "model.onnx"
    code, _, err = run_cli(
        capsys, "export", "onnx", "--weights", checkpoint, "--output", output, "--int8",
        "--calibration", folder,
    )  # fmt: skip
    assert code == 2
    assert f"{folder}: no calibration image left (2 unreadable of 2)" in only_line(err)
    assert not output.exists()
