"""LDConv's per-sample convolutions on ONNX Runtime's blocked kernels (ldnet.deploy.nchwc):
the rewrite gives the plain graph's heatmaps, a wrong one is caught and left out, and graphs
without per-sample convolutions are left alone."""

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import spread

from ldnet.deploy import nchwc
from ldnet.deploy.export import export_onnx
from ldnet.inference.backends import onnx_session
from ldnet.models import build_model

pytest.importorskip("onnxruntime")
needs_blocked_kernels = pytest.mark.skipif(
    nchwc.block_size() == 0, reason="ONNX Runtime has no blocked kernels on this CPU"
)
INPUT = (128, 96)
TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    network = spread(build_model("ldnet_s", 17))
    with torch.no_grad():  # O(1) heatmaps, so that a relative tolerance means something
        network.head.final.weight.normal_(0, 0.5)
    return network.eval()


@pytest.fixture(scope="module")
def fixed_batch_graph(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("nchwc") / "b3.onnx", INPUT, batch=3)


def test_the_block_size_is_one_of_the_x86_blocks():
    assert nchwc.block_size() in (0, 8, 16)


@needs_blocked_kernels
def test_blocked_session_gives_pytorchs_heatmaps(model, fixed_batch_graph):
    session = onnx_session(fixed_batch_graph, threads=2)
    # ldnet_s: 8 LDConvs of 16-128 channels, all in whole blocks; the KRM's (17 channels) not.
    assert session.blocked_convs == 8
    images = torch.randn(3, 3, *INPUT)
    with torch.no_grad():
        expected = model(images).numpy()
    (heatmaps,) = session.run(None, {"images": images.numpy()})
    scale = float(np.abs(expected).max())
    assert scale > 0.5
    assert float(np.abs(heatmaps - expected).max()) < 1e-4 * scale


@needs_blocked_kernels
def test_the_rewrite_replaces_the_convolutions_and_keeps_names(fixed_batch_graph):
    model = onnx.load(str(fixed_batch_graph))
    names = {node.name for node in model.graph.node if node.op_type == "Conv"}
    assert nchwc.block_per_sample_convs(model, nchwc.block_size()) == 8
    blocked = [node for node in model.graph.node if node.domain == nchwc.NCHWC_DOMAIN]
    assert [node.op_type for node in blocked[:3]] == ["ReorderInput", "Conv", "ReorderOutput"]
    assert sum(node.op_type == "Conv" for node in blocked) == 8
    assert {node.name for node in blocked if node.op_type == "Conv"} <= names


@needs_blocked_kernels
def test_a_wrong_layout_is_caught_and_the_plain_graph_runs(fixed_batch_graph, monkeypatch, capsys):
    # The kernels laid out for a block twice the CPU's: what a graph made on another CPU
    # would hold. The parity check must see it and fall back.
    real = nchwc.block_per_sample_convs
    monkeypatch.setattr(
        nchwc, "block_per_sample_convs", lambda model, block: real(model, block * 2)
    )
    session = onnx_session(fixed_batch_graph, threads=1)
    assert session.blocked_convs == 0
    warning = capsys.readouterr().err
    assert "blocked convolutions not used" in warning and "of their scale" in warning
    assert str(fixed_batch_graph) in warning
    assert warning.count("\n") == 1


def test_dynamic_batch_graphs_and_the_switch_leave_the_graph_plain(
    model, fixed_batch_graph, tmp_path, monkeypatch
):
    dynamic = export_onnx(model, tmp_path / "dynamic.onnx", INPUT)
    assert onnx_session(dynamic, threads=1).blocked_convs == 0
    assert onnx_session(fixed_batch_graph, threads=1, blocked=False).blocked_convs == 0
    monkeypatch.setenv(nchwc.DISABLE_VARIABLE, "0")
    assert onnx_session(fixed_batch_graph, threads=1).blocked_convs == 0


@needs_blocked_kernels
def test_the_onnx_profile_shows_no_reorder_at_the_joins(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("profile_onnx", TOOLS / "profile_onnx.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    times, runs = tool.profile("ldnet_s", 2, INPUT, 1, 2, tmp_path, reorders=True)
    # The check's run of the blocked graph is in the profile too; two runs were asked for.
    assert runs == 3
    calls = {kind: len(values) // runs for kind, values in times.items()}
    # 10 per-sample convolutions a run (8 blocked + the KRM's 2).
    assert calls["Conv per-sample (LDConv)"] == 10
    # The blocked layout runs through the joins: no reorder serves an addition, an activation,
    # a batch-folding reshape of a blocked convolution or the attention's pooling any more
    # (ONNX Runtime alone leaves a dozen of each kind here); what remains serves the stem and
    # the attention's 17-channel layers.
    reorders = {kind for kind in calls if kind.startswith("Reorder")}
    assert reorders and not {
        kind
        for kind in reorders
        if kind.endswith(("Add", "LeakyRelu", "Relu", "GlobalAveragePool", "rewrites"))
    }
    # Additions and activations run inside the blocked convolutions, the LD blocks' residual
    # ones too (through LDConv's batch-unfolding Reshape); left: fusion sums of an upsampled
    # branch, and the refinement module's 17-channel ReLUs.
    joins = {kind: calls.get(kind, 0) for kind in ("Add", "LeakyRelu", "Relu")}
    assert joins["Add"] <= 5 and joins["LeakyRelu"] <= 3 and joins["Relu"] <= 2, joins
    # The control: ONNX Runtime's layout pass alone.
    monkeypatch.setenv(nchwc.DISABLE_VARIABLE, "0")
    times, runs = tool.profile("ldnet_s", 2, INPUT, 1, 2, tmp_path, reorders=True)
    calls = {kind: len(values) // runs for kind, values in times.items()}
    assert calls["ReorderOutput to Add"] >= 8 and calls["ReorderInput from LeakyRelu"] >= 8
    assert calls["Add"] >= 16 and calls["LeakyRelu"] >= 11 and calls["Relu"] >= 10


def test_the_layout_pass_carries_only_what_keeps_the_values():
    from onnx import helper

    from ldnet.deploy.nchwc_layout import NCHWC_DOMAIN, _blocked_twin, _Layout

    shapes = {
        "x": [2, 32, 6, 4], "y": [2, 32, 6, 4], "bias": [1, 32, 1, 1], "odd": [2, 24, 6, 4],
        "folded": [1, 64, 6, 4], "rows": [2, 32, 4, 6],
    }  # fmt: skip
    graph = helper.make_graph(
        [
            helper.make_node("ReorderOutput", [f"{name}_b"], [name], domain=NCHWC_DOMAIN,
                             channels=shapes[name][1])
            for name in ("x", "y", "bias", "odd")
        ],
        "g", [], [],
    )  # fmt: skip
    layout = _Layout(graph, shapes, 16)
    assert layout.of("x") == "x_b" and layout.of("odd") is None  # 24 channels: padded blocks

    def twin(op_type, inputs, output, **attributes):
        shapes.setdefault(output, shapes[inputs[0]])
        node = helper.make_node(op_type, inputs, [output], name=output, **attributes)
        made = _blocked_twin(node, layout)
        return made and (made.op_type, list(made.input))

    assert twin("LeakyRelu", ["x"], "a", alpha=0.01) == ("LeakyRelu", ["x_b"])
    assert twin("Add", ["x", "y"], "s") == ("Add", ["x_b", "y_b"])
    assert twin("Add", ["x", "bias"], "broadcast") is None
    assert twin("LeakyRelu", ["odd"], "o") is None
    assert twin("Reshape", ["x", "shape"], "folded") == ("Reshape", ["x_b", "shape"])
    assert twin("Reshape", ["x", "shape"], "rows") is None  # H and W exchanged: not blocks
