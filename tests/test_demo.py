"""`ldnet demo` end to end, shrunk to seconds: generate, train, test, draw."""

import json
import os
import subprocess
import sys

import cv2
import pytest

from ldnet.evaluation import COCO_METRIC_NAMES, evaluate_coco
from ldnet.synthetic.dataset import DETECTIONS


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ldnet.cli", "demo", "--output", str(tmp_path), "--quiet"]
        + ["--epochs", "1", "--train-images", "6", "--val-images", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = tmp_path.glob("demo-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert tuple(metrics) == COCO_METRIC_NAMES
    # The reported numbers are the official evaluator's on the results file it wrote.
    results = json.loads((run_dir / "test" / "results.json").read_text())
    val = run_dir / "data" / "annotations" / "person_keypoints_val2017.json"
    assert list(metrics.values()) == pytest.approx(list(evaluate_coco(results, val).values()))
    assert f"| {metrics['AP']:.3f} |" in result.stdout  # the printed table
    # One person per box of the stand-in detector, in each of the 3 val images.
    detections = json.loads((run_dir / "data" / DETECTIONS).read_text())
    assert len(results) == len(detections)
    assert {r["image_id"] for r in results} == {1_000_001, 1_000_002, 1_000_003}
    pictures = sorted((run_dir / "pictures").glob("*.jpg"))
    assert [p.name for p in pictures] == [f"{i:012d}.jpg" for i in range(1_000_001, 1_000_004)]
    assert cv2.imread(str(pictures[0])).shape == (240, 320, 3)  # the val image, drawn on
    assert (run_dir / "train" / "last.pt").is_file()
    # Step 5: `ldnet predict`'s path on the same boxes gives `ldnet test`'s keypoints and AP,
    # and ONNX Runtime gives PyTorch's keypoints.
    parity = json.loads((run_dir / "predict_vs_test.json").read_text())
    assert parity["people"] == len(results)
    assert parity["max_keypoint_difference_px"] <= 1e-3
    assert parity["ap_test"] == pytest.approx(metrics["AP"], abs=1e-12)
    assert parity["ap_difference"] <= 1e-6
    assert parity["onnxruntime_vs_pytorch_max_difference_px"] <= 1e-2


def test_demo_recipe_matches_its_config_file():
    from pathlib import Path

    from ldnet.config import config_from_dict, config_to_dict, load_config
    from ldnet.synthetic.demo import DEMO_EPOCHS, demo_config

    shipped = load_config(Path(__file__).parents[1] / "configs" / "synthetic_ldnet_s_128x96.yaml")
    demo = config_from_dict(
        {**demo_config(Path("runs/synthetic"), DEMO_EPOCHS, "ldnet_s"), "name": shipped.name}
    )
    assert config_to_dict(demo) == config_to_dict(shipped)
