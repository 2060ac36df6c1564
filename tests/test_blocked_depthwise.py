"""LDConv's per-sample depthwise convolutions in ONNX Runtime's blocked layout: the rewritten
graph is the same function, and it really runs them in the blocked kernel."""

import numpy as np
import onnx
import pytest
import torch
from ldconv_nets import spread
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ldnet.inference import blocked_depthwise
from ldnet.inference.backends import BatchSpecializedOnnxBackend, export_fixed_batch, onnx_session
from ldnet.models.ldconv import LDConv

BLOCK = blocked_depthwise.nchwc_block_size()
needs_nchwc = pytest.mark.skipif(BLOCK is None, reason="ONNX Runtime has no NCHWc on this CPU")


def _computed_kernel_convs(model: onnx.ModelProto) -> list[str]:
    """Plain-layout convolutions whose kernel is computed in the graph (not a constant)."""
    constants = {tensor.name for tensor in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if (node.domain, node.op_type) == ("", "Conv") and node.input[1] not in constants
    ]


def _ldconv_net() -> nn.Module:
    """LDConvs on 16 and 32 channels (whole blocks), one strided, and one on 18 (not whole
    blocks of 4, 8 or 16: stays as it is)."""
    torch.manual_seed(0)
    return spread(
        nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            LDConv(16, 32),
            LDConv(32, 32, stride=2),
            LDConv(32, 18),
            LDConv(18, 16, relu=False),
        )
    )


def test_block_size_is_read_off_onnx_runtime():
    # MLAS blocks channels by 4 (SSE/NEON), 8 (AVX2) or 16 (AVX-512), if at all.
    assert BLOCK in (None, 4, 8, 16)


@needs_nchwc
@pytest.mark.parametrize("batch", [1, 4])
def test_ldconv_graph_runs_its_whole_block_depthwise_convs_blocked(tmp_path, batch):
    net = _ldconv_net()
    path, optimised = export_fixed_batch(net, batch, (16, 12), tmp_path)
    assert optimised
    model = onnx.load(str(path))
    # Three of the four per-sample depthwise convolutions are on whole blocks: blocked now.
    assert len(_computed_kernel_convs(model)) == 1
    blocked = [node for node in model.graph.node if node.name.endswith("/blocked")]
    assert len(blocked) == 3
    assert all(node.domain == blocked_depthwise.NCHWC_DOMAIN for node in blocked)
    # The bank was reordered in place of a Transpose of every sample's kernel.
    assert not any(node.op_type == "Transpose" for node in model.graph.node)

    crops = np.random.default_rng(1).standard_normal((batch, 3, 16, 12)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(crops)).numpy()
    (heatmaps,) = onnx_session(path, 1, optimised=True).run(None, {"images": crops})
    assert np.abs(expected).max() > 0.5
    assert np.abs(heatmaps - expected).max() <= 1e-5 * np.abs(expected).max()


@needs_nchwc
def test_backend_matches_pytorch_at_batch_1_and_5_with_blocked_graphs():
    net = _ldconv_net()
    backend = BatchSpecializedOnnxBackend(net, (16, 12), threads=1)
    crops = np.random.default_rng(2).standard_normal((5, 3, 16, 12)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(crops)).numpy()
    for count in (1, 5):
        heatmaps = backend(crops[:count])
        assert np.abs(heatmaps - expected[:count]).max() <= 1e-5 * np.abs(expected).max()


@needs_nchwc
@pytest.mark.parametrize("batch", [1, 3])
def test_any_computed_kernel_is_put_into_the_blocked_layout(tmp_path, batch):
    """A kernel that is a graph input (no bank to reorder): the reorder happens in the graph,
    and the folded batch keeps each sample's channels apart."""
    channels, rng = 2 * BLOCK, np.random.default_rng(3)
    groups = batch * channels
    constant = {
        "pointwise": rng.standard_normal((channels, channels, 1, 1)).astype(np.float32),
        "fold": np.array([1, groups, 8, 6], np.int64),
        "unfold": np.array([batch, channels, 8, 6], np.int64),
    }
    nodes = [helper.make_node("Conv", ["x", "pointwise"], ["a"])]
    if batch > 1:
        nodes.append(helper.make_node("Reshape", ["a", "fold"], ["a_folded"]))
    depthwise_input = "a_folded" if batch > 1 else "a"
    nodes.append(
        helper.make_node(
            "Conv", [depthwise_input, "kernel"], ["b"], group=groups, pads=[1, 1, 1, 1]
        )
    )
    if batch > 1:
        nodes.append(helper.make_node("Reshape", ["b", "unfold"], ["b_unfolded"]))
    nodes.append(helper.make_node("Conv", ["b_unfolded" if batch > 1 else "b", "pointwise"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "computed-kernel",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, 8, 6]),
            helper.make_tensor_value_info("kernel", TensorProto.FLOAT, [groups, 1, 3, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in constant.items()],
    )
    path = tmp_path / "computed-kernel.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    blocked_path = blocked_depthwise.blocked_graph(path, tmp_path)
    assert blocked_path is not None
    assert _computed_kernel_convs(onnx.load(str(blocked_path))) == []

    feed = {
        "x": rng.standard_normal((batch, channels, 8, 6)).astype(np.float32),
        "kernel": rng.standard_normal((groups, 1, 3, 3)).astype(np.float32),
    }
    (expected,) = onnx_session(path, 1).run(None, feed)
    (blocked,) = onnx_session(blocked_path, 1, optimised=True).run(None, feed)
    assert np.abs(blocked - expected).max() <= 1e-5 * np.abs(expected).max()


def test_without_nchwc_the_exported_graph_runs_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr(blocked_depthwise, "nchwc_block_size", lambda: None)
    net = _ldconv_net()
    path, optimised = export_fixed_batch(net, 2, (16, 12), tmp_path)
    assert not optimised and path.name == "model-batch2.onnx"
    assert len(_computed_kernel_convs(onnx.load(str(path)))) == 4
    crops = np.random.default_rng(4).standard_normal((2, 3, 16, 12)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(crops)).numpy()
    (heatmaps,) = onnx_session(path, 1).run(None, {"images": crops})
    assert np.abs(heatmaps - expected).max() <= 1e-5 * np.abs(expected).max()
