"""The one test-time path: the weights' record, rescoring and OKS-NMS against hand-computed
cases, and `ldnet predict` = `ldnet test` on the same weights and boxes."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import training_checkpoint
from onnx import TensorProto, helper

from ldnet.checkpoint import CheckpointError
from ldnet.cli import main
from ldnet.config import config_from_dict, save_config
from ldnet.data.transforms import box_to_center_scale
from ldnet.inference import (
    ModelRecord,
    PersonPrediction,
    box_areas_px,
    joint_scores,
    oks_matrix,
    oks_nms,
    oks_nms_indices,
    people_results,
    record_from_checkpoint,
    record_from_metadata,
)
from ldnet.predict import PoseEstimator

# -- the record -------------------------------------------------------------------------------


def test_record_round_trips_through_checkpoint_and_onnx_metadata():
    record = ModelRecord("ldnet_s", 17, "coco", (128, 96), codec="dark", sigma=0.75)
    assert record.heatmap_size == (32, 24)
    assert record_from_checkpoint(record.to_checkpoint(), "x.pt") == record
    assert record.to_metadata()["sigma"] == "0.75"
    assert record_from_metadata(record.to_metadata(), "x.onnx") == record
    codec = record.build_codec()
    assert (codec.name, codec.sigma, codec.input_size, codec.heatmap_size) == (
        "dark",
        0.75,
        (128, 96),
        (32, 24),
    )


def test_checkpoint_of_a_training_run_records_the_configs_codec(tmp_path):
    values = {
        "model": {"name": "ldnet_s"},
        "data": {"input_size": [64, 64], "sigma": 0.75},
        "test": {"decoder": "msra"},
    }
    path = training_checkpoint(tmp_path / "w.pt", values)
    data = torch.load(path, weights_only=True)
    assert data["codec"] == {
        "name": "msra",
        "sigma": 0.75,
        "input_size": [64, 64],
        "heatmap_size": [16, 16],
    }
    assert data["convention"] == "ldnet"
    # PoseEstimator decodes with it: the bug was a DARK blur for sigma 2 on every model.
    estimator = PoseEstimator.from_weights(path)
    assert (estimator.codec.name, estimator.codec.sigma) == ("msra", 0.75)


def test_old_checkpoint_without_a_record_gets_its_configs_codec_and_a_note():
    notes = []
    old = {
        "model": {"name": "ldnet", "num_joints": 17, "dataset": "coco", "input_size": [256, 192]},
        "config": {"data": {"sigma": 0.75}, "test": {"decoder": "dark"}},
    }
    record = record_from_checkpoint(old, "old.pt", note=notes.append)
    assert (record.codec, record.sigma, record.convention) == ("dark", 0.75, "ldnet")
    assert record.heatmap_size == (64, 48)
    assert len(notes) == 1 and notes[0].startswith("note: old.pt: no codec record")


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"codec": {"sigma": -1.0}}, "sigma", "must be a positive number, got -1.0"),
        ({"codec": {"sigma": "wide"}}, "sigma", "is not a number: 'wide'"),
        ({"codec": {"name": "gauss"}}, "codec", "is 'gauss', expected one of msra, dark"),
        (
            {"codec": {"heatmap_size": [64]}},
            "heatmap_size",
            "is not two integers (height, width): [64]",
        ),
        ({"convention": "udp"}, "convention", "is 'udp', expected one of ldnet, hrnet"),
        ({"codec": "dark"}, "codec", "is a str, expected a mapping"),
        ({"model": {"num_joints": 16}}, "num_joints", "is 16, but the coco joint set has 17"),
    ],
)
def test_malformed_record_names_the_file_and_the_field(change, field, problem):
    data = ModelRecord("ldnet", 17, "coco", (256, 192)).to_checkpoint()
    for key, value in change.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(CheckpointError) as error:
        record_from_checkpoint(data, "w.pt")
    assert str(error.value).startswith(f"w.pt: codec record field {field!r} {problem}")


def tiny_onnx(path: Path, metadata: dict[str, str]) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["heatmaps"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"ldnet.{key}", value
    onnx.save(model, str(path))
    return path


def test_cli_refuses_a_malformed_record_in_one_line(tmp_path, capsys):
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((64, 48, 3), np.uint8))
    data = ModelRecord("ldnet_s", 17, "coco", (64, 64)).to_checkpoint()
    data["codec"]["sigma"] = 0
    checkpoint = tmp_path / "w.pt"
    torch.save(data, checkpoint)
    metadata = {**ModelRecord("ldnet_s", 17, "coco", (64, 64)).to_metadata()}
    metadata["heatmap_size"] = "16by16"
    exported = tiny_onnx(tmp_path / "w.onnx", metadata)
    for weights, message in (
        (checkpoint, f"{checkpoint}: codec record field 'sigma' must be a positive number, got 0"),
        (exported, f"{exported}: codec record field 'heatmap_size' is not HxW"),
    ):
        code = main(["predict", str(image), "--weights", str(weights), "--output",
                     str(tmp_path / "out"), "--whole-image", "--quiet"])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0]
        assert not (tmp_path / "out").exists()


# -- rescoring and OKS-NMS, by hand ---------------------------------------------------------


def test_rescoring_is_box_score_times_mean_confident_joint():
    keypoints = np.zeros((2, 3, 3))
    keypoints[0, :, 2] = [0.1, 0.5, 0.9]  # 0.1 is under the 0.2 threshold
    keypoints[1, :, 2] = [0.1, 0.15, 0.2]  # none above: 0, not a division by zero
    np.testing.assert_allclose(joint_scores(keypoints, 0.2), [0.7, 0.0])
    people = [
        PersonPrediction(1, keypoints[0], 0.8, np.zeros(2), np.ones(2)),
        PersonPrediction(2, keypoints[1], 0.9, np.zeros(2), np.ones(2)),  # another image
    ]
    rows = people_results(people, sigmas=[0.1] * 3, in_vis_threshold=0.2, oks_threshold=0.9)
    assert [row["score"] for row in rows] == pytest.approx([0.56, 0.0])


def shifted_pair(shift_px: float, joints: int = 5) -> np.ndarray:
    """Two people whose every joint is ``shift_px`` apart horizontally."""
    base = np.stack([np.linspace(100, 140, joints), np.linspace(50, 200, joints)], -1)
    keypoints = np.ones((2, joints, 3))
    keypoints[0, :, :2] = base
    keypoints[1, :, :2] = base + [shift_px, 0]
    return keypoints


def test_oks_nms_scales_by_the_padded_aspect_fixed_box():
    # A 100x100 detection box: raw area 10,000 px^2. For a 256x192 input the box is widened
    # to the 3:4 aspect (100 x 133.3) and padded by 1.25: 125 x 166.7 = 20,833.3 px^2.
    center, scale = box_to_center_scale(np.array([[50.0, 50, 100, 100]] * 2), (256, 192))
    assert box_areas_px(scale[0]) == pytest.approx(125 * 500 / 3, rel=1e-6)
    keypoints, sigmas = shifted_pair(10.0), [0.1] * 5
    # OKS = exp(-d^2 / (2 (2 sigma)^2 s)) = exp(-100 / (0.08 s)).
    padded = oks_matrix(keypoints, box_areas_px(scale), sigmas)[0, 1]
    raw = oks_matrix(keypoints, np.array([1e4, 1e4]), sigmas)[0, 1]
    assert padded == pytest.approx(np.exp(-100 / (0.08 * 125 * 500 / 3)))  # 0.942
    assert raw == pytest.approx(np.exp(-100 / 800))  # 0.882
    people = [
        PersonPrediction(7, keypoints[n], 1.0, center[n], scale[n], score=s)
        for n, s in enumerate([0.9, 0.8])
    ]
    # Above 0.9 with the reference's padded area: the weaker duplicate goes. (With the raw
    # box area, 0.882, both would stay.)
    assert [p.score for p in oks_nms(people, sigmas, 0.9)] == [0.9]


def test_oks_nms_uses_the_mean_area_of_the_pair():
    keypoints, sigmas = shifted_pair(10.0), [0.1] * 5
    areas = np.array([1e4, 4e4])  # the kept (better-scored) person is the small one
    overlap = oks_matrix(keypoints, areas, sigmas)
    assert overlap[0, 1] == overlap[1, 0] == pytest.approx(np.exp(-100 / (0.08 * 2.5e4)))
    # 0.951 with the mean area; the kept person's area alone would give 0.882 and keep both.
    assert oks_nms_indices(keypoints, areas, np.array([0.9, 0.8]), sigmas, 0.9) == [0]
    assert oks_nms_indices(keypoints, areas, np.array([0.9, 0.8]), sigmas, 0.96) == [0, 1]


# -- ldnet predict = ldnet test ---------------------------------------------------------------


@pytest.mark.slow
def test_predict_gives_the_keypoints_and_ap_of_test(tmp_path, capsys):
    """Same weights, same held-out images, same detection boxes: `ldnet predict` (one image
    at a time) and `ldnet test` (a DataLoader over the split) agree to 1e-3 px and 1e-6 AP."""
    from ldnet.synthetic import generate_dataset

    paths = generate_dataset(tmp_path / "data", 0, 6, seed=3)
    values = {
        "model": {"name": "ldnet_s"},
        "data": {"root": str(paths.root), "input_size": [128, 96], "sigma": 0.75},
        "test": {"batch_size": 8, "use_gt_boxes": False},
    }
    values["test"]["detection_file"] = str(paths.val_detections.relative_to(paths.root))
    checkpoint = training_checkpoint(tmp_path / "w.pt", values)
    save_config(config_from_dict(values), tmp_path / "config.yaml")
    assert main(["test", str(tmp_path / "config.yaml"), "--weights", str(checkpoint),
                 "--run-dir", str(tmp_path / "test"), "--quiet"]) == 0  # fmt: skip
    predict = ["predict", str(paths.val_images), "--weights", str(checkpoint), "--detections",
               str(paths.val_detections), "--box-threshold", "0", "--output",
               str(tmp_path / "predict"), "--no-overlay", "--quiet"]  # fmt: skip
    assert main(predict) == 0
    capsys.readouterr()

    def rows(folder):
        results = json.loads((tmp_path / folder / "results.json").read_text())
        return sorted(results, key=lambda r: (r["image_id"], -r["score"]))

    tested, predicted = rows("test"), rows("predict")
    assert len(tested) == len(predicted) == len(json.loads(paths.val_detections.read_text()))
    assert [r["image_id"] for r in tested] == [r["image_id"] for r in predicted]
    a = np.array([r["keypoints"] for r in tested]).reshape(len(tested), -1, 3)
    b = np.array([r["keypoints"] for r in predicted]).reshape(len(tested), -1, 3)
    assert np.abs(a[..., :2] - b[..., :2]).max() <= 1e-3
    np.testing.assert_allclose([r["score"] for r in tested], [r["score"] for r in predicted],
                               atol=1e-6)  # fmt: skip

    aps = []
    for folder in ("test", "predict"):
        main(["evaluate", "--dataset", "coco", "--ann", str(paths.val_annotations),
              "--results", str(tmp_path / folder / "results.json"), "--json"])  # fmt: skip
        aps.append(json.loads(capsys.readouterr().out)["AP"])
    assert aps[0] == pytest.approx(aps[1], abs=1e-6)


def test_engine_and_predict_do_not_import_each_other():
    """They share ldnet.inference; neither reaches into the other."""
    import ast

    package = Path(__file__).resolve().parents[1] / "ldnet"
    for owner, other in (("engine", "predict"), ("predict", "engine")):
        for path in (package / owner).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom):
                    names = [("." * node.level) + (node.module or "")]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    assert f"ldnet.{other}" not in name and not name.startswith(f"..{other}"), (
                        f"{path.name} imports {name}"
                    )
