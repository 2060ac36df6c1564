"""`ldnet bench`: GMAC/s and the dense-convolution peak, bad input, and the batch-specialised
ONNX Runtime backend it times (parity with PyTorch, one graph per power-of-two batch).

No timing assertions: speed targets are checked by benchmarks, not timed unit tests."""

import numpy as np
import onnx
import pytest
import torch
from ldconv_nets import spread
from torch import nn

from ldnet.benchmark import PEAK_CHANNELS, PEAK_MAP, PEAK_MODEL, BenchError, benchmark_forward
from ldnet.cli import main
from ldnet.complexity import measure
from ldnet.export import export_onnx
from ldnet.inference.backends import BatchSpecializedOnnxBackend
from ldnet.models import build_model
from ldnet.models.ldconv import LDConv


def test_gmac_per_s_is_macs_times_rate_and_the_peak_is_timed():
    torch.set_num_threads(1)
    results = benchmark_forward(
        ["ldnet_static"], [1], (64, 64), repeats=1, min_repeat_s=0.01, peak=True
    )
    by_model = {r.model: r for r in results}
    assert set(by_model) == {"ldnet_static", PEAK_MODEL}
    macs = measure(build_model("ldnet_static", 17), (64, 64)).macs
    model = by_model["ldnet_static"]
    assert model.gmac_per_s == pytest.approx(macs * model.images_per_s / 1e9)
    peak = by_model[PEAK_MODEL]
    height, width = PEAK_MAP
    peak_macs = PEAK_CHANNELS**2 * 9 * height * width
    assert peak.gmac_per_s == pytest.approx(peak_macs / (peak.ms_per_batch * 1e-3) / 1e9)


def test_bench_bad_input_is_one_line_exit_2(capsys, monkeypatch):
    with pytest.raises(BenchError, match="batch size must be at least 1, got 0"):
        benchmark_forward(["ldnet_static"], [0], (64, 64))

    def no_runtime(*args, **kwargs):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr("ldnet.inference.backends.onnx_session", no_runtime)
    code = main(
        ["bench", "--models", "ldnet_static", "--batch", "1", "--input", "64x64",
         "--backend", "onnxruntime", "--peak", "--repeats", "1"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--peak" in err and "onnxruntime" in err and "No module named" in err


def _small_ldconv_net() -> nn.Module:
    torch.manual_seed(0)
    return spread(nn.Sequential(LDConv(3, 8), LDConv(8, 4, stride=2, relu=False)))


def test_batch_specialised_onnx_matches_pytorch_at_batch_1_and_5(tmp_path):
    net = _small_ldconv_net()
    backend = BatchSpecializedOnnxBackend(net, (16, 12), threads=1)
    assert backend.chunk_sizes(5) == [4, 1]
    assert backend.chunk_sizes(37) == [16, 16, 4, 1]
    crops = np.random.default_rng(0).standard_normal((5, 3, 16, 12)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(crops)).numpy()
    for count in (1, 5):
        heatmaps = backend(crops[:count])
        assert heatmaps.shape == expected[:count].shape
        assert np.abs(heatmaps - expected[:count]).max() <= 1e-4 * np.abs(expected).max()
    assert sorted(backend.sessions) == [1, 4]  # 5 ran as 4 + 1, no padding


def test_fixed_batch_graph_runs_one_depthwise_conv_per_ldconv(tmp_path):
    net = _small_ldconv_net()
    fixed = onnx.load(str(export_onnx(net, tmp_path / "fixed.onnx", (16, 12), batch=3)))
    dynamic = onnx.load(str(export_onnx(net, tmp_path / "dynamic.onnx", (16, 12))))
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    def convs(graph):
        return sum(node.op_type == "Conv" for node in graph.node)

    # Two LDConvs: depthwise + pointwise each; the dynamic graph runs the K = 4 kernels apart.
    assert convs(fixed.graph) == 2 * 2
    assert convs(dynamic.graph) == 2 * (4 + 1)
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        export_onnx(net, tmp_path / "zero.onnx", (16, 12), batch=0)
