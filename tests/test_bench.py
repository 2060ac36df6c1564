"""`ldnet bench`: GMAC/s and the dense-convolution peak, bad input, and the batch-specialised
ONNX Runtime backend it times (parity with PyTorch, one graph per power-of-two batch).

No timing assertions: speed targets are checked by benchmarks, not timed unit tests."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from helpers import only_line, spread
from torch import nn

from ldnet.bench.models import PEAK_CHANNELS, PEAK_MAP, PEAK_MODEL, BenchError, benchmark_forward
from ldnet.cli import main
from ldnet.deploy.export import export_onnx
from ldnet.deploy.nchwc import block_size
from ldnet.inference.backends import (
    BatchSpecializedOnnxBackend,
    CompiledTorchBackend,
    CompileFailed,
    TorchBackend,
    power_of_two_chunks,
)
from ldnet.models import build_model
from ldnet.models.complexity import measure
from ldnet.models.ldconv import DynamicConv2d


def test_gmac_per_s_is_macs_times_rate_and_the_peak_is_timed():
    torch.set_num_threads(1)
    results = benchmark_forward(["ldnet_s"], [1], (64, 64), repeats=1, min_repeat_s=0.01, peak=True)
    by_model = {r.model: r for r in results}
    assert set(by_model) == {"ldnet_s", PEAK_MODEL}
    macs = measure(build_model("ldnet_s", 17), (64, 64)).macs
    model = by_model["ldnet_s"]
    assert model.gmac_per_s == pytest.approx(macs * model.images_per_s / 1e9)
    peak = by_model[PEAK_MODEL]
    height, width = PEAK_MAP
    peak_macs = PEAK_CHANNELS**2 * 9 * height * width
    assert peak.gmac_per_s == pytest.approx(peak_macs / (peak.ms_per_batch * 1e-3) / 1e9)


def test_results_name_the_ldconv_forms_that_ran():
    torch.set_num_threads(1)
    results = benchmark_forward(
        ["ldnet_s"], [1, 2], (64, 64), repeats=1, min_repeat_s=0.01,
        backends=["pytorch", "onnxruntime", "onnxruntime-dynamic"],
    ) + benchmark_forward(
        ["hrnet_w32"], [1], (64, 64), repeats=1, min_repeat_s=0.01,
        backends=["pytorch", "onnxruntime-dynamic"],
    )  # fmt: skip
    forms = {(r.backend, r.model, r.batch): r.execution for r in results}
    # Batch 1: plain convolutions with the mixed kernels. Batch 2 in inference: the three
    # 3x3 LDConvs on maps of at most 64 pixels (8x8, 4x4, 2x2) run as patches, twice each;
    # the 16x16 branch and the refinement module's two run grouped.
    assert forms[("pytorch", "ldnet_s", 1)] == "aggregate"
    assert forms[("pytorch", "ldnet_s", 2)] == "aggregate 4 + patches 6"
    # ONNX Runtime: all 8 LDConvs of 16-128 channels on its blocked kernels, where it has them.
    blocked = ", 8 on blocked kernels" if block_size() else ""
    assert forms[("onnxruntime", "ldnet_s", 2)] == "aggregate" + blocked
    assert forms[("onnxruntime-dynamic", "ldnet_s", 1)] == "mixture"
    assert {forms[(b, "hrnet_w32", 1)] for b in ("pytorch", "onnxruntime-dynamic")} == {"-"}
    forced = benchmark_forward(
        ["ldnet_s"], [2], (64, 64), repeats=1, min_repeat_s=0.01, execution="mixture"
    )
    assert forced[0].execution == "mixture"


def test_bench_bad_input_is_one_line_exit_2(capsys, monkeypatch):
    with pytest.raises(BenchError, match="batch size must be at least 1, got 0"):
        benchmark_forward(["ldnet_s"], [0], (64, 64))

    def no_runtime(*args, **kwargs):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr("ldnet.inference.backends.onnx_session", no_runtime)
    code = main(
        ["bench", "--models", "ldnet_s", "--batch", "1", "--input", "64x64",
         "--backend", "onnxruntime", "--peak", "--repeats", "1"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--peak" in err and "onnxruntime" in err and "No module named" in err


def _small_ldconv_net() -> nn.Module:
    torch.manual_seed(0)
    return spread(
        nn.Sequential(DynamicConv2d(3, 8, 3), nn.BatchNorm2d(8), DynamicConv2d(8, 4, 3, stride=2))
    )


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


@pytest.mark.slow
def test_compiled_pytorch_backend_matches_eager_in_power_of_two_chunks():
    net = _small_ldconv_net()
    eager = TorchBackend(copy.deepcopy(net))
    compiled = CompiledTorchBackend(net)
    crops = np.random.default_rng(0).standard_normal((5, 3, 16, 12)).astype(np.float32)
    calls = []
    real = compiled.compiled
    compiled.compiled = lambda images: calls.append(len(images)) or real(images)
    expected = eager(crops)
    heatmaps = compiled(crops)
    assert calls == [4, 1]  # 5 crops as 4 + 1: two shapes compiled, no padding
    assert np.abs(heatmaps - expected).max() <= 1e-4 * np.abs(expected).max()
    assert power_of_two_chunks(37, 16) == [16, 16, 4, 1] and power_of_two_chunks(0, 16) == []


def test_compile_failure_is_one_line_naming_the_way_out(monkeypatch):
    backend = CompiledTorchBackend(_small_ldconv_net())

    def failing(images):
        raise torch._dynamo.exc.TorchDynamoException("C++ compiler not found\nmore detail")

    backend.compiled = failing
    with pytest.raises(CompileFailed) as error:
        backend(np.zeros((1, 3, 16, 12), np.float32))
    assert str(error.value) == (
        "backend pytorch-compile: torch.compile failed here (C++ compiler not found); "
        "use --backend pytorch"
    )


def test_bench_runs_the_compiled_backend_beside_eager(monkeypatch):
    compiled = []

    def fake_compile(model, device):  # the wiring, not Inductor (tested above)
        compiled.append(device.type)
        return model

    monkeypatch.setattr("ldnet.bench.models.compile_for_inference", fake_compile)
    results = benchmark_forward(
        ["ldnet_s"], [1], (64, 64), repeats=1, min_repeat_s=0.0,
        backends=("pytorch", "pytorch-compile"), peak=True,
    )  # fmt: skip
    assert compiled == ["cpu"]
    assert [(r.backend, r.model) for r in results] == [
        ("pytorch", "dense-conv3x3"), ("pytorch", "ldnet_s"), ("pytorch-compile", "ldnet_s")
    ]  # fmt: skip
    assert results[-1].execution == "aggregate"


def test_fixed_batch_graph_mixes_kernels_in_the_graph(tmp_path):
    net = _small_ldconv_net()
    fixed = onnx.load(str(export_onnx(net, tmp_path / "fixed.onnx", (16, 12), batch=3)))
    dynamic = onnx.load(str(export_onnx(net, tmp_path / "dynamic.onnx", (16, 12))))
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    def main_convs(model):
        """The LDConvs' own convolutions (not the attentions' 1x1s): group count and, for a
        constant weight, its output channels (None: computed in the graph)."""
        constants = {t.name: t for t in model.graph.initializer}
        found = []
        for node in model.graph.node:
            if node.op_type != "Conv":
                continue
            weight = constants.get(node.input[1])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if weight is None or weight.dims[2] == 3:
                found.append((group, None if weight is None else weight.dims[0]))
        return found

    # Fixed batch: each sample's kernel mixed in the graph, the batch in the groups. Dynamic
    # batch: the K = 4 kernels as one static convolution of 4 x out channels.
    assert main_convs(fixed) == [(3, None), (3, None)]
    assert main_convs(dynamic) == [(1, 4 * 8), (1, 4 * 4)]
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        export_onnx(net, tmp_path / "zero.onnx", (16, 12), batch=0)


def test_bench_times_each_backend_in_a_process_of_its_own(capsys, monkeypatch):
    """Several backends in one process slow each other (eager 1.4x slower beside ONNX
    Runtime sessions): each runs in a child `ldnet bench --json`, the table joins them."""
    import subprocess

    commands = []
    real_run = subprocess.run

    def spy(command, **kwargs):
        commands.append(command)
        return real_run(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    code = main(
        ["bench", "--models", "ldnet_s", "hrnet_w32", "--batch", "1", "--input", "64x64",
         "--backend", "pytorch", "onnxruntime", "--repeats", "1", "--min-repeat-s", "0",
         "--threads", "1", "--json"]
    )  # fmt: skip
    assert code == 0
    assert [command[command.index("--backend") + 1 :] for command in commands] == [
        ["pytorch", "--json"], ["onnxruntime", "--json"]
    ]  # fmt: skip
    assert all("--threads" in command and "1" in command for command in commands)
    rows = json.loads(capsys.readouterr().out)
    assert [(row["backend"], row["model"]) for row in rows] == [
        ("pytorch", "ldnet_s"), ("pytorch", "hrnet_w32"),
        ("onnxruntime", "ldnet_s"), ("onnxruntime", "hrnet_w32"),
    ]  # fmt: skip
    assert rows[1]["speedup_vs_hrnet_w32"] == 1.0 and rows[2]["speedup_vs_pytorch"] > 0

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 2, "", "ldnet bench: error: no openvino\n")

    monkeypatch.setattr(subprocess, "run", failing)
    code = main(["bench", "--models", "ldnet_s", "--backend", "pytorch", "openvino"])
    assert code == 2
    assert only_line(capsys.readouterr().err) == (
        "ldnet bench: error: --backend pytorch: no openvino"
    )
