"""ONNX export: parity with PyTorch at batch 1 and 5, metadata, `ldnet export onnx`, and the
PyTorch-vs-ONNX-Runtime benchmark."""

import json

import numpy as np
import onnx
import pytest
import torch
from helpers import spread

from ldnet.cli import main
from ldnet.deploy.export import export_onnx, read_metadata
from ldnet.inference.backends import onnx_session
from ldnet.models import build_model


def _spread(model: torch.nn.Module) -> torch.nn.Module:
    """Random-init heads output ~1e-3 (N(0, 0.001)) and near-uniform kernel attention: a
    parity check would pass on almost anything. Make the heatmaps O(1) and the attention
    differ per sample, so a 1e-4 tolerance means something."""
    spread(model)
    with torch.no_grad():
        model.head.final.weight.normal_(0, 0.5)
        if hasattr(model.head, "krm"):
            model.head.krm.conv1[0].weight.normal_(0, 0.3)
    return model.eval()


@pytest.mark.slow
def test_onnx_runtime_matches_pytorch_at_batch_1_and_5(tmp_path):
    torch.manual_seed(0)
    model = _spread(build_model("ldnet", 17))
    path = export_onnx(model, tmp_path / "ldnet.onnx", (256, 192))
    batch_dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"  # dynamic, not a fixed number
    session = onnx_session(path, threads=2)
    for batch in (1, 5):
        images = torch.randn(batch, 3, 256, 192)
        with torch.no_grad():
            expected = model(images).numpy()  # eager default: "aggregate", BN unfolded
        (heatmaps,) = session.run(None, {"images": images.numpy()})
        assert heatmaps.shape == (batch, 17, 64, 48)
        scale = float(np.abs(expected).max())
        assert scale > 0.5
        difference = float(np.abs(heatmaps - expected).max())
        # ONNX Runtime sums in another order; 16 LD blocks of sharp attention amplify that.
        assert difference < 1e-4 * scale, f"batch {batch}: {difference / scale:.1e} of scale"


def test_export_cli_writes_metadata_and_checks_parity(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    code = main(
        ["export", "onnx", "--model", "ldnet_w32_no_krm", "--dataset", "mpii", "--input", "64x64",
         "--output", str(path)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "ldnet_w32_no_krm, mpii (16 joints), input 64x64, dark codec (sigma 2), dynamic batch"
        in out
    )
    for batch in (1, 5):
        line = next(x for x in out.splitlines() if f"batch {batch}:" in x)
        assert float(line.rsplit(" ", 1)[1]) < 1e-4
    assert read_metadata(path) == {
        "model": "ldnet_w32_no_krm",
        "num_joints": "16",
        "dataset": "mpii",
        "input_size": "64x64",
        "codec": "dark",
        "sigma": "2.0",
        "heatmap_size": "16x16",
        "convention": "ldnet",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_export_cli_bad_input(tmp_path, capsys):
    code = main(["export", "onnx", "--model", "ldnet", "--output", str(tmp_path / "no/m.onnx")])
    assert code == 2
    assert "m.onnx: folder" in capsys.readouterr().err
    code = main(["export", "onnx", "--weights", str(tmp_path / "x.pt"), "--output", "m.onnx"])
    assert code == 2
    assert "x.pt: no such checkpoint file" in capsys.readouterr().err


def test_bench_compares_pytorch_and_onnx_runtime(capsys):
    code = main(
        ["bench", "--models", "ldnet_s", "ldnet_w32_no_krm", "--reference", "ldnet_s",
         "--batch", "1", "2", "--input", "64x64", "--repeats", "1", "--min-repeat-s", "0.01",
         "--json"]
    )  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    cases = {(r["backend"], r["model"], r["batch"]) for r in rows}
    assert cases == {
        (backend, model, batch)
        for backend in ("pytorch", "onnxruntime")
        for model in ("ldnet_s", "ldnet_w32_no_krm")
        for batch in (1, 2)
    }
    rate = {(r["backend"], r["model"], r["batch"]): r["images_per_s"] for r in rows}
    for row in rows:
        backend, model, batch = row["backend"], row["model"], row["batch"]
        # images/s is batch / seconds per call; the ratios are of the matching rows.
        assert row["images_per_s"] * row["ms_per_batch"] == pytest.approx(1e3 * batch)
        assert row["speedup_vs_ldnet_s"] == pytest.approx(
            rate[(backend, model, batch)] / rate[(backend, "ldnet_s", batch)]
        )
        assert row["speedup_vs_pytorch"] == pytest.approx(
            rate[(backend, model, batch)] / rate[("pytorch", model, batch)]
        )
