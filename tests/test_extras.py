"""The core install trains, tests, evaluates and predicts; each optional part says which extra
it needs in one line. Checked in child processes in which every extra's libraries fail to
import (as on `pip install ldnet` without extras), whatever this machine has installed."""

import subprocess
import sys

import pytest
import yaml
from helpers import COCO_MINI, VAL2017, random_checkpoint

from ldnet.errors import EXTRAS

BLOCKED = sorted({module for modules in EXTRAS.values() for module in modules})

# A `None` in sys.modules makes `import name` (and `from name import ...`) raise ImportError.
CORE_ONLY = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None
from ldnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def core_ldnet(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CORE_ONLY, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_the_blocker_blocks():
    """The control: in the child, an extra's library does not import."""
    result = subprocess.run(
        [sys.executable, "-c", CORE_ONLY.replace("from ldnet.cli", "import fastapi\nfrom x")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "import of fastapi halted" in result.stderr


@pytest.mark.slow
def test_core_install_trains_tests_and_predicts(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "core",
                "output_dir": str(tmp_path / "runs"),
                "model": {"name": "ldnet_s"},
                "data": {"root": str(COCO_MINI), "input_size": [64, 64], "workers": 0},
                "train": {"epochs": 1, "batch_size": 4, "max_iters_per_epoch": 2},
                "test": {"batch_size": 16},
            }
        )
    )
    run = tmp_path / "run"
    trained = core_ldnet("train", config, "--run-dir", run, "--quiet")
    assert trained.returncode == 0, trained.stderr[-2000:]
    # No TensorBoard: one note naming the extra, and log.csv has every figure.
    notes = [line for line in error_lines(trained) if "tensorboard" in line]
    assert notes == [
        "note: TensorBoard logging needs the 'tensorboard' extra (tensorboard is not "
        "installed): pip install 'ldnet[tensorboard]'; log.csv has every figure"
    ]
    assert (run / "last.pt").is_file() and not (run / "tensorboard").exists()

    tested = core_ldnet("test", config, "--weights", run / "last.pt", "--quiet")
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert "AP" in tested.stdout

    image = VAL2017 / "000000000139.jpg"
    predicted = core_ldnet(
        "predict", image, "--weights", run / "last.pt", "--output", tmp_path / "out", "--quiet"
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert (tmp_path / "out" / "results.json").is_file()
    # The default YOLOX detector runs in ONNX Runtime: a core install says so and uses HOG.
    (people,) = [line for line in error_lines(predicted) if line.startswith("people:")]
    assert "core-install fallback" in people and "pip install 'ldnet[deploy]'" in people


@pytest.mark.parametrize(
    "args, extra",
    [
        (["serve", "--weights", "{w}"], "serve"),
        (["bench", "serve", "--model", "ldnet_s"], "serve"),
        (["export", "onnx", "--weights", "{w}", "--output", "{tmp}/x.onnx"], "deploy"),
        (
            [
                "predict",
                "{img}",
                "--weights",
                "{w}",
                "--backend",
                "onnxruntime",
                "--output",
                "{tmp}/o",
            ],
            "deploy",
        ),
        (
            [
                "predict",
                "{img}",
                "--weights",
                "{w}",
                "--backend",
                "openvino",
                "--output",
                "{tmp}/o",
            ],
            "openvino",
        ),
        (["plot", "{tmp}"], "plot"),
    ],
    ids=["serve", "bench-serve", "export", "onnxruntime", "openvino", "plot"],
)
def test_a_missing_extra_is_one_line_exit_2(tmp_path, args, extra):
    weights = random_checkpoint(tmp_path / "w.pt")
    filled = [a.format(w=weights, tmp=tmp_path, img=VAL2017 / "000000000139.jpg") for a in args]
    result = core_ldnet(*filled)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [line for line in error_lines(result) if not line.startswith("people:")]
    assert f"needs the '{extra}' extra" in line and f"pip install 'ldnet[{extra}]'" in line
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "o").exists()
