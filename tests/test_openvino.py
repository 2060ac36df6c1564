"""The openvino backend: the fixed-batch graphs and the exported file give PyTorch's and ONNX
Runtime's heatmaps, and a machine without OpenVINO gets one line saying what to install.

The checks run in a child pytest process: once OpenVINO's CPU plugin is loaded, its thread
pool stays, and a later test of the same process that forks (DataLoader workers, servers)
crashed with SIGSEGV (tests/test_recipe.py and tests/test_serve_api.py, reproducibly, on a
2-core Intel Xeon; the suite without these checks passes)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import spread

from ldnet.cli import main
from ldnet.deploy.export import export_onnx
from ldnet.inference.backends import (
    BackendUnavailable,
    BatchSpecializedOnnxBackend,
    OnnxRuntimeBackend,
    make_backend,
    onnx_file_backend,
)
from ldnet.models import build_model

pytest.importorskip("openvino", reason="the openvino extra is not installed")
IN_CHILD = os.environ.get("LDNET_OPENVINO_CHILD") == "1"
child_only = pytest.mark.skipif(not IN_CHILD, reason="run in their own process (module doc)")


def test_the_openvino_checks_pass_in_their_own_process():
    if IN_CHILD:
        pytest.skip("this is the child")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "LDNET_OPENVINO_CHILD": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout, result.stdout[-1000:]


SIZE = (64, 64)


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return spread(build_model("ldnet_s", 17)).eval()


def crops(count: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((count, 3, *SIZE)).astype(np.float32)


@child_only
def test_fixed_batch_graphs_give_pytorchs_heatmaps(network):
    backend = make_backend(network, "openvino", SIZE, threads=1)
    assert isinstance(backend, BatchSpecializedOnnxBackend) and backend.name == "openvino"
    images = crops(3)
    with torch.no_grad():
        expected = network(torch.from_numpy(images)).numpy()
    heatmaps = backend(images)  # 2 + 1
    assert sorted(backend.sessions) == [1, 2]
    scale = np.abs(expected).max()
    assert scale > 1e-3
    assert np.abs(heatmaps - expected).max() <= 1e-4 * scale


@child_only
def test_the_exported_file_runs_as_in_onnx_runtime(network, tmp_path):
    path = export_onnx(network, tmp_path / "model.onnx", SIZE)
    images = crops(5)
    expected = OnnxRuntimeBackend(path, 1)(images)
    heatmaps = onnx_file_backend(path, "openvino", 1)(images)
    assert heatmaps.shape == expected.shape
    assert np.abs(heatmaps - expected).max() <= 1e-4 * np.abs(expected).max()
    again = onnx_file_backend(path, "openvino", 1)
    first = again(images[:2])
    again(images[2:])  # the request's buffer is reused; the first answer must not change
    assert np.array_equal(first, heatmaps[:2])


@child_only
def test_without_openvino_one_line_says_what_to_install(network, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails
    with pytest.raises(BackendUnavailable, match=r"pip install 'ldnet\[openvino\]'"):
        make_backend(network, "openvino", SIZE)
    code = main(
        ["bench", "--models", "ldnet_s", "--batch", "1", "--input", "64x64",
         "--backend", "openvino", "--repeats", "1"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ldnet[openvino]" in err
