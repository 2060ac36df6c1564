"""`ldnet demo` end to end, shrunk to seconds: generate, train, test, draw."""

import json
import os
import subprocess
import sys

import cv2
import pytest


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
    assert set(metrics) >= {"AP", "AP50", "AP75", "AR"} and 0.0 <= metrics["AP"] <= 1.0
    assert "| AP " in result.stdout  # the printed table
    pictures = sorted((run_dir / "pictures").glob("*.jpg"))
    assert len(pictures) == 3 and cv2.imread(str(pictures[0])) is not None
    assert (run_dir / "train" / "last.pt").is_file()
    assert json.loads((run_dir / "test" / "results.json").read_text())  # people were found


def test_demo_recipe_matches_its_config_file():
    from pathlib import Path

    from ldnet.config import config_from_dict, config_to_dict, load_config
    from ldnet.demo import demo_config

    shipped = load_config(Path(__file__).parents[1] / "configs" / "synthetic_ldnet_s_128x96.yaml")
    demo = config_from_dict(
        {**demo_config(Path("runs/synthetic"), 10, "ldnet_s"), "name": shipped.name}
    )
    assert config_to_dict(demo) == config_to_dict(shipped)
