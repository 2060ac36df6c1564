"""`ldnet bench` from the command line, good and bad input (`ldnet complexity`:
tests/test_complexity.py)."""

import json
import subprocess
import sys

import pytest

from ldnet.cli import main


def run_cli(*args):
    """Run the real console entry point in a subprocess: exit code, stdout, stderr."""
    process = subprocess.run(
        [sys.executable, "-m", "ldnet.cli", *args], capture_output=True, text=True, timeout=300
    )
    return process.returncode, process.stdout, process.stderr


def test_bench_json_rows(capsys):
    args = ["bench", "--batch", "1", "--repeats", "1", "--min-repeat-s", "0", "--json"]
    # PyTorch only (the default adds ONNX Runtime: tests/test_export.py).
    assert main([*args, "--models", "ldnet_w32_no_krm", "ldnet", "--backend", "pytorch"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["batch"]) for r in rows] == [("ldnet_w32_no_krm", 1), ("ldnet", 1)]
    assert {r["backend"] for r in rows} == {"pytorch"}
    for row in rows:  # --min-repeat-s 0: one call per repeat; images/s is batch / seconds
        assert (row["repeats"], row["iterations_per_repeat"]) == (1, 1)
        assert row["images_per_s"] * row["ms_per_batch"] == pytest.approx(1e3 * row["batch"])


def test_bench_unknown_model_is_one_line():
    code, _, err = run_cli("bench", "--models", "ldnet", "yolo")
    assert code == 2
    assert "unknown model 'yolo'; choose from ldnet" in err
    assert len(err.strip().splitlines()) == 1


def test_bench_training_rows(capsys):
    args = ["bench", "--train", "--batch", "2", "--repeats", "1", "--json", "--input", "64x64"]
    assert main([*args, "--models", "ldnet", "hrnet_w32"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["ldnet", "hrnet_w32"]
    assert {r["backend"] for r in rows} == {"pytorch-train"}
    for row in rows:  # two steps per repeat; images/s is batch / seconds per step
        assert (row["repeats"], row["iterations_per_repeat"]) == (1, 2)
        assert row["images_per_s"] * row["ms_per_batch"] == pytest.approx(1e3 * 2)
    ldnet, hrnet = rows
    assert ldnet["speedup_vs_hrnet_w32"] == pytest.approx(
        ldnet["images_per_s"] / hrnet["images_per_s"]
    )
