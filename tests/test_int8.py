"""`ldnet export onnx --int8 --calibration DIR`: ONNX Runtime static quantization calibrated on
real COCO-MINI person crops, its record, `ldnet predict` on the int8 file, and
the bad-input list.

CI's gate is looser than the measured one: no trained checkpoint is at hand here (training one
costs minutes), so instead of "AP change <= 0.01" (measured on the demo's and the COCO-MINI
memorisation checkpoints, docs/measurements.md "int8") CI checks the quantization's fidelity
on held-out real crops: the int8 heatmaps stay within 10 % of the float graph's peak (random
weights' heatmaps are flat, so their maxima would not test the decoding of a trained model's
peaks), on a random network whose activations keep a trained one's order of magnitude
(`unit_gain_weights`).

The file must be right on every x86-64 CPU, not only on the one running CI (issue 18): its
integers are checked so that no pair sum of ONNX Runtime's 16-bit u8s8 kernels (AVX2 /
AVX-512 without VNNI) can saturate, and on this CPU its kernels are compared with the same
file run with 16-bit products.
"""

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from helpers import VAL2017, VAL_ANN, only_line, run_cli, training_checkpoint
from onnx import numpy_helper

from ldnet.cli import main
from ldnet.data.dataset import prepare_crops
from ldnet.data.images import read_image
from ldnet.data.transforms import PIXEL_STD, box_to_center_scale
from ldnet.deploy.export import read_metadata
from ldnet.deploy.int8 import (
    RUNAWAY_FACTOR,
    CalibrationSet,
    drop_runaway_crops,
    float_tail,
)
from ldnet.inference import load_model
from ldnet.inference.backends import onnx_session
from ldnet.models import build_model
from ldnet.predict import PoseEstimator

SIZE = (64, 64)
FIDELITY_BOUND = 0.10  # max |int8 - float| heatmap difference, as a fraction of the float peak
# ONNX Runtime's uint8 x int8 kernels on x86-64 without VNNI (VPMADDUBSW) add each pair of
# products into a saturating int16: a pair of uint8 activations (0..255) times int8 weights
# must stay within this on every input.
INT16_MAX = 32767
UINT8_MAX = 255
# max |default int8 kernels - the same file with 16-bit u8s8 products|, a fraction of the peak
SATURATION_BOUND = 0.2


def person_boxes() -> dict[int, list[list[float]]]:
    """Ground-truth person boxes of COCO-MINI val2017 by image id (people with joints)."""
    annotations = json.loads(VAL_ANN.read_text())["annotations"]
    boxes: dict[int, list[list[float]]] = {}
    for entry in annotations:
        if entry.get("num_keypoints", 0) > 0 and not entry.get("iscrowd", 0):
            boxes.setdefault(entry["image_id"], []).append(entry["bbox"])
    return boxes


def unit_gain_weights(model: torch.nn.Module) -> None:
    """He-normal convolution kernels (LDConv's banks per kernel), so that activations keep
    the order of magnitude a trained network's have. The official initialisation (std 0.001)
    shrinks them layer by layer: the untrained ldnet_s's heatmaps peak at about 1e-12, and its
    int8 error is then noise of that scale (12 % of the peak in exact 8-bit QDQ arithmetic, on
    any CPU), not a measure of the quantization."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 4:  # (out, in, k, k) or LDConv's (K, out, in, k, k)
                kernels = parameter.view(-1, *parameter.shape[-3:])
                torch.nn.init.kaiming_normal_(kernels, nonlinearity="relu")


def save_checkpoint(folder: Path, unit_gain: bool) -> Path:
    values = {"model": {"name": "ldnet_s"}, "data": {"dataset": "coco", "input_size": list(SIZE)}}
    return training_checkpoint(
        folder / "ldnet_s.pt", values, prepare=unit_gain_weights if unit_gain else None
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random ldnet_s as initialised (its decoding and record through `ldnet predict`)."""
    return save_checkpoint(tmp_path_factory.mktemp("weights"), unit_gain=False)


@pytest.fixture(scope="module")
def unit_gain_checkpoint(tmp_path_factory):
    """Random ldnet_s with activations of order one (the int8 arithmetic's fidelity)."""
    return save_checkpoint(tmp_path_factory.mktemp("unit_gain"), unit_gain=True)


@pytest.fixture(scope="module")
def split_images():
    """Six val2017 images with people to calibrate on, four others held out."""
    boxes = person_boxes()
    ids = sorted(boxes)
    return ids[:6], ids[6:10], boxes


def image_path(image_id: int) -> Path:
    return VAL2017 / f"{image_id:012d}.jpg"


def export_int8(
    checkpoint: Path, split_images, folder: Path, said: list | None = None
) -> tuple[Path, int]:
    """The int8 file, calibrated on six images with their person boxes plus a broken file;
    ``said`` gets what the command printed (stdout, stderr)."""
    calibration_ids, _, boxes = split_images
    images = folder / "calibration"
    images.mkdir()
    for image_id in calibration_ids:
        (images / image_path(image_id).name).symlink_to(image_path(image_id))
    (images / "000000000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    detections = folder / "detections.json"
    rows = [
        {"image_id": image_id, "category_id": 1, "bbox": box, "score": 1.0}
        for image_id in calibration_ids
        for box in boxes[image_id]
    ]
    detections.write_text(json.dumps(rows))
    output = folder / "model_int8.onnx"
    notes, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(notes), contextlib.redirect_stdout(out):
        code = main(
            [
                "export", "onnx", "--weights", str(checkpoint), "--output", str(output),
                "--int8", "--calibration", str(images), "--calibration-detections",
                str(detections),
            ]
        )  # fmt: skip
    assert code == 0
    assert "skipped 1 unreadable calibration image(s): 000000000001.jpg" in notes.getvalue()
    if said is not None:
        said.extend([out.getvalue(), notes.getvalue()])
    return output, len(rows)


def export_float(checkpoint: Path, folder: Path) -> Path:
    path = folder / "model.onnx"
    assert main(["export", "onnx", "--weights", str(checkpoint), "--output", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def int8_export(checkpoint, split_images, tmp_path_factory):
    return export_int8(checkpoint, split_images, tmp_path_factory.mktemp("int8"))


@pytest.fixture(scope="module")
def float_export(checkpoint, tmp_path_factory):
    return export_float(checkpoint, tmp_path_factory.mktemp("float"))


@pytest.fixture(scope="module")
def unit_gain_exports(unit_gain_checkpoint, split_images, tmp_path_factory):
    """(int8 file, float file) of the unit-gain network."""
    folder = tmp_path_factory.mktemp("unit_gain_exports")
    int8_path, _ = export_int8(unit_gain_checkpoint, split_images, folder)
    return int8_path, export_float(unit_gain_checkpoint, folder)


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
    # The last fusion and the head stay float (`float_tail`).
    dequantized = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    tail = float_tail(load_model(checkpoint)[0])
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    quantized = [node for node in convolutions if not tail.covers(node.name)]
    in_float = [node for node in convolutions if tail.covers(node.name)]
    assert quantized and in_float
    assert all(node.input[1] in dequantized for node in quantized)
    assert not any(node.input[1] in dequantized for node in in_float)
    scales = {tensor.name: tensor.dims for tensor in graph.initializer}
    assert all(scales[dequantized[node.input[1]].input[1]][0] > 1 for node in quantized)
    meta = read_metadata(path)
    record = load_model(checkpoint)[1].to_metadata()
    assert {key: meta[key] for key in record} == record
    assert meta["precision"] == "int8"
    calibration_ids = split_images[0]
    assert meta["calibration"].startswith(
        f"percentile, {2 * people} crops (mirrored included) of {len(calibration_ids)} images"
    )


def int8_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every int8 weight initializer a convolution or matrix product reads (QDQ: through a
    DequantizeLinear; QOperator: QLinearConv / QLinearMatMul), with its zero points."""
    graph = onnx.load(str(path)).graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    weight_input = {"DequantizeLinear": (0, 2), "QLinearConv": (3, 5), "QLinearMatMul": (3, 5)}
    found = {}
    for node in graph.node:
        if node.op_type not in weight_input:
            continue
        value_at, zero_at = weight_input[node.op_type]
        tensor = constants.get(node.input[value_at])
        if tensor is None or tensor.data_type != onnx.TensorProto.INT8:
            continue
        zero = constants.get(node.input[zero_at]) if len(node.input) > zero_at else None
        zeros = numpy_helper.to_array(zero) if zero is not None else np.zeros(1, np.int8)
        found[tensor.name] = (numpy_helper.to_array(tensor), zeros)
    return found


def largest_pair_sum(weights: np.ndarray) -> int:
    """The largest |w_a| + |w_b| of two weights of one output channel (axis 0): whatever
    order a kernel packs a channel's weights in, no pair it forms can exceed this."""
    magnitudes = np.abs(weights.reshape(len(weights), -1).astype(np.int32))
    if magnitudes.shape[1] == 1:
        return int(magnitudes.max())
    top_two = -np.partition(-magnitudes, 1, axis=1)[:, :2]
    return int(top_two.sum(axis=1).max())


def test_no_uint8_int8_pair_sum_can_saturate_int16(int8_export):
    """Issue 18: with 8-bit weights the int8 file was wrong on AVX2-only CPUs (0.305 relative
    heatmap error on an AMD EPYC) and right on VNNI ones. This reads the file's integers, so
    it fails on every CPU when a pair sum 255 * (|w_a| + |w_b|) can pass 32767."""
    path, _ = int8_export
    weights = int8_weights(path)
    assert len(weights) >= 10  # every convolution's weights, not a stray tensor
    # Symmetric weights (zero point 0): the kernels multiply the stored integers as they are.
    assert [name for name, (_, zeros) in weights.items() if np.any(zeros != 0)] == []
    pairs = {name: largest_pair_sum(values) for name, (values, _) in weights.items()}
    worst = max(pairs, key=pairs.get)
    assert UINT8_MAX * pairs[worst] <= INT16_MAX, (
        f"{worst}: 255 * {pairs[worst]} = {UINT8_MAX * pairs[worst]} > {INT16_MAX}"
    )
    # 7-bit weights, as the record says (reduce_range: [-64, 64]).
    assert max(int(np.abs(values.astype(np.int32)).max()) for values, _ in weights.values()) <= 64
    assert "reduce_range" in read_metadata(path)["quantization"]


def test_largest_pair_sum_sees_any_two_weights_of_a_channel():
    weights = np.zeros((2, 3, 3, 3), np.int8)
    weights[0, 0, 0, 0], weights[0, 2, 2, 2] = 127, -90  # far apart in the channel
    weights[1, 1, 1, 1] = -128  # one weight alone
    assert largest_pair_sum(weights) == 217
    assert largest_pair_sum(weights[1:]) == 128
    assert largest_pair_sum(np.full((4, 1, 1, 1), -64, np.int8)) == 64
    assert UINT8_MAX * largest_pair_sum(np.full((1, 8), 64, np.int8)) == 32640 <= INT16_MAX


def test_int8_kernels_do_not_saturate_on_this_cpu(unit_gain_exports, split_images):
    """The int8 file through ONNX Runtime's default kernels against the same file with
    ``session.x64quantprecision`` (u8s8 products widened to 16 bits first: no saturation on any
    x86-64 CPU). Measured on an AVX2-only AMD EPYC: identical with 7-bit weights, 57 % of the
    peak apart with 8-bit ones (issue 18); two execution paths of one file that round
    differently (QDQ fused or not) differ by up to 7 % on this untrained network, hence the
    bound. On CPUs with VNNI both paths accumulate in 32 bits: the pair-sum test above is the
    check that holds there too."""
    path, _ = unit_gain_exports
    crops = held_out_crops(split_images)
    (kernels,) = onnx_session(path, 1).run(None, {"images": crops})
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.x64quantprecision", "1")
    widened = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (expected,) = widened.run(None, {"images": crops})
    assert np.abs(kernels - expected).max() / np.abs(expected).max() < SATURATION_BOUND


def test_int8_heatmaps_stay_close_to_float_on_held_out_crops(unit_gain_exports, split_images):
    """CI's looser gate (see the module docstring), on the unit-gain network: 8.3 % of the
    peak with 7-bit weights on an AVX2-only AMD EPYC (7.4 % in exact 8-bit QDQ arithmetic; the
    8-bit file's kernels there: 57 %)."""
    int8_path, float_path = unit_gain_exports
    crops = held_out_crops(split_images)
    assert relative_error(int8_path, float_path, crops) < FIDELITY_BOUND


def test_predict_runs_the_int8_file(int8_export, float_export, split_images, tmp_path, capsys):
    path, _ = int8_export
    image_id = split_images[1][0]
    image = image_path(image_id)
    # A held-out person's box: the crops the file was calibrated for (person boxes) and the
    # ones the fidelity bound is stated for. (A whole-image crop is another distribution;
    # docs/measurements.md "int8": whole-image calibration and use lose more.)
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


def test_an_int8_file_far_from_float_is_named_in_a_warning(
    checkpoint, split_images, tmp_path, monkeypatch
):
    """The export compares int8 with float heatmaps on its calibration crops and warns past
    INT8_WARN_ERROR of the float peak (a trained official LDNet lost all its AP in int8)."""
    said = []
    (tmp_path / "near").mkdir()
    (tmp_path / "far").mkdir()
    export_int8(checkpoint, split_images, tmp_path / "near", said)
    stdout, stderr = said
    assert "% of the float peak, peaks at the same pixel " in stdout
    assert "warning:" not in stderr  # this checkpoint quantizes well
    monkeypatch.setattr("ldnet.cli.export.INT8_WARN_ERROR", -1.0)
    said.clear()
    path, _ = export_int8(checkpoint, split_images, tmp_path / "far", said)
    (warning,) = [line for line in said[1].splitlines() if line.startswith("warning:")]
    assert warning == (
        f"warning: {path}: int8 is far from float on its own calibration crops; "
        "measure its AP (ldnet test) before using it"
    )


def test_crops_whose_activations_run_away_are_left_out_of_calibration(split_images):
    """One int8 range per tensor cannot hold crops whose activations run 10x past the rest
    (a trained official LDNet lost all its AP to 16 such crops of 172): they are left out,
    counted and named in the record; crops within a few times the median stay."""
    model = build_model("ldnet_s", 17).eval()
    unit_gain_weights(model)
    crops = np.concatenate([held_out_crops(split_images)] * 2)[:6]  # ordinary real crops
    scaled = crops.copy()
    scaled[1] *= 1000.0  # every activation of the network about 1000x (ReLU, eval BatchNorm)
    scaled[4] *= 1000.0
    scaled[2] *= 3.0  # a brighter crop: more than the median, well within the factor
    calibration = CalibrationSet(scaled, images=3, unreadable=[], without_boxes=0)
    kept = drop_runaway_crops(model, calibration)
    assert kept.runaway == 2
    np.testing.assert_array_equal(kept.crops, scaled[[0, 2, 3, 5]])
    assert kept.describe(Path("calib")) == (
        "4 crops (mirrored included) of 3 images in calib, 2 more left out "
        f"(activations past {RUNAWAY_FACTOR:g}x the median crop's)"
    )
    ordinary = drop_runaway_crops(model, replace(calibration, crops=crops))
    assert ordinary.runaway == 0 and len(ordinary.crops) == 6
    assert ordinary.describe(Path("calib")) == "6 crops (mirrored included) of 3 images in calib"


def test_a_dead_stage_does_not_make_every_crop_a_runaway(monkeypatch):
    """A part whose median crop's activations are all zero gives no scale: it is skipped."""
    peaks = np.array([[1.0, 0.0], [1.2, 0.0], [0.9, 5.0], [30.0, 0.0]])
    monkeypatch.setattr("ldnet.deploy.int8.activation_peaks", lambda model, crops: peaks)
    crops = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)
    kept = drop_runaway_crops(torch.nn.Identity(), CalibrationSet(crops, 4, [], 0))
    assert kept.runaway == 1  # only the crop 30x the median of the live part
    np.testing.assert_array_equal(kept.crops.ravel(), [0.0, 1.0, 2.0])


def ldconv_mixtures(path: Path) -> int:
    """ReduceSum nodes inside LDConvs: the mixture form sums its K weighted responses."""
    graph = onnx.load(str(path)).graph
    return sum(
        node.op_type == "ReduceSum" and "/attention/" not in node.name for node in graph.node
    )


def test_steady_ldconvs_are_static_in_the_int8_file_and_moving_ones_stay_mixtures(
    checkpoint, split_images, tmp_path, monkeypatch
):
    """At T = 34 the attentions barely move, so the export writes each LDConv as one static
    convolution; when the collapse would move the heatmaps past its tolerance (set to zero
    here), the LDConvs stay the mixture and the export says so."""
    said = []
    (tmp_path / "steady").mkdir()
    (tmp_path / "moving").mkdir()
    steady, _ = export_int8(checkpoint, split_images, tmp_path / "steady", said)
    lines = said[0].splitlines()
    assert lines[0].startswith("10 LDConvs as static convolutions at their mean attention")
    assert read_metadata(steady)["ldconvs"] == lines[0]
    assert ldconv_mixtures(steady) == 0
    monkeypatch.setattr("ldnet.deploy.collapse.COLLAPSE_TOLERANCE", -1.0)
    said.clear()
    moving, _ = export_int8(checkpoint, split_images, tmp_path / "moving", said)
    kept = "LDConvs kept dynamic: at their mean attention the heatmaps moved past -1 of the peak"
    assert said[0].splitlines()[0] == kept
    assert read_metadata(moving)["ldconvs"] == kept
    # Eight LDConvs in stage 4 and two in the head; the head's stay float but mixtures too.
    assert ldconv_mixtures(moving) == 10
