"""LDConv's per-sample convolutions on ONNX Runtime's blocked (NCHWc) CPU kernels.

ONNX Runtime's CPU provider runs a convolution in its fast blocked layout (channels in
blocks of 8 or 16, the NCHWc transformer) only when its kernel is a stored initializer,
because it reorders the kernel once, when the session is built. A fixed-batch LDNet graph
mixes each sample's kernel in the graph ("aggregate": ``attention @ bank``, reshaped, one
convolution with the batch in the groups), so those convolutions take the generic im2col
path instead. The blocked convolution itself (``com.microsoft.nchwc.Conv``) reads its
kernel at every call: with the bank stored in the blocked kernel order, the same
``attention @ bank`` writes kernels it can take as they are, and ``ReorderInput`` /
``ReorderOutput`` around it carry the activations in and out of the blocked layout.

The block size is the CPU's (16 with AVX-512, 8 with AVX2; no blocked kernels elsewhere) and
the op belongs to ONNX Runtime's build, so the rewrite is made where a session is built, on
that machine, and checked there: ``blocked_graph`` opens the rewritten graph only if it and
the plain graph agree on one random batch (``onnx_session`` calls it; any surprise falls back
to the plain graph with a one-line warning). The result is the same function: the blocked
kernel adds the same products in another order (4e-7 of the heatmaps' scale, measured).
``LDNET_ORT_BLOCKED=0`` turns the rewrite off.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldnet.deploy.nchwc_layout import NCHWC_DOMAIN, carry_blocked_layout, static_shapes

# How far the rewritten graph's outputs may move, as a fraction of the largest |output|; the
# blocked kernels measured 4e-7 (float sums in another order), a wrong layout moves them by
# the outputs' own size.
PARITY_TOLERANCE = 1e-4
DISABLE_VARIABLE = "LDNET_ORT_BLOCKED"


@functools.cache
def block_size() -> int:
    """ONNX Runtime's NCHWc block on this CPU (channels a block), 0 if it has none.

    Read off ``ReorderInput``, which pads 4 channels (its least) to a whole block; a build or
    CPU without the blocked kernels fails to run it."""
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReorderInput", ["x"], ["y"], domain=NCHWC_DOMAIN)],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(NCHWC_DOMAIN, 1)],
        # What torch.onnx writes; onnx's own default (IR 10 and up) older runtimes refuse.
        ir_version=8,
    )
    try:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        (padded,) = session.run(None, {"x": np.zeros((1, 4, 1, 1), np.float32)})
    except Exception:  # noqa: BLE001 - no blocked kernels in this build or on this CPU
        return 0
    return int(padded.shape[1])


@dataclass
class _Match:
    """One per-sample convolution and the nodes that make its kernel."""

    conv: object  # onnx.NodeProto
    bank: str  # the initializer of the K kernels
    kernels: int
    out_channels: int  # per sample
    in_channels: int
    kernel_size: tuple[int, int]


def _constant(name: str, initializers: dict, producers: dict):
    """The value of ``name`` if it is an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute:
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _per_sample_convs(graph) -> list[_Match]:
    """The Conv nodes whose kernel is ``Reshape(attention @ Flatten(bank))``, exactly the
    chain ``LDConv``'s aggregate execution exports, each link used by nothing else."""
    from onnx import helper

    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1

    def only_use(name: str, op_type: str):
        node = producers.get(name)
        return node if node is not None and node.op_type == op_type and uses[name] == 1 else None

    matches = []
    for conv in graph.node:
        if conv.op_type != "Conv" or conv.domain or conv.input[1] in initializers:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        reshape = only_use(conv.input[1], "Reshape")
        mixing = reshape and only_use(reshape.input[0], "MatMul")
        flatten = mixing and only_use(mixing.input[1], "Flatten")
        if not flatten or flatten.input[0] not in initializers or uses[flatten.input[0]] != 1:
            continue
        shape = _constant(reshape.input[1], initializers, producers)
        bank_dims = list(initializers[flatten.input[0]].dims)
        if shape is None or len(shape) != 4 or len(bank_dims) != 5:
            continue
        kernels, out_channels, in_channels, height, width = bank_dims
        if list(shape[1:]) != [in_channels, height, width]:
            continue
        matches.append(
            _Match(conv, flatten.input[0], kernels, out_channels, in_channels, (height, width))
        )
    return matches


def block_per_sample_convs(model, block: int) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``, in place) so that every per-sample
    convolution whose channels fill whole blocks runs as ONNX Runtime's blocked convolution;
    returns how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    matches = [
        match
        for match in _per_sample_convs(graph)
        if match.out_channels % block == 0 and match.in_channels % block == 0
    ]
    if not matches:
        return 0
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    replacements = {}
    for match in matches:
        bank = numpy_helper.to_array(initializers[match.bank])
        height, width = match.kernel_size
        # (K, O, I, kh, kw) -> (K, O/b, I/b, kh, kw, b_in, b_out): MLAS's OIHWBiBo kernel order,
        # applied to each of the K kernels, so any mix of them is in that order too.
        blocked = bank.reshape(
            match.kernels,
            match.out_channels // block,
            block,
            match.in_channels // block,
            block,
            height,
            width,
        ).transpose(0, 1, 3, 5, 6, 4, 2)
        initializers[match.bank].CopyFrom(
            numpy_helper.from_array(np.ascontiguousarray(blocked).reshape(bank.shape), match.bank)
        )
        conv = match.conv
        attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        groups = attributes.get("group", 1)
        blocked_in, blocked_out = conv.output[0] + "/blocked_in", conv.output[0] + "/blocked_out"
        replacements[id(conv)] = [
            helper.make_node(
                "ReorderInput",
                [conv.input[0]],
                [blocked_in],
                conv.name + "/ReorderInput",
                domain=NCHWC_DOMAIN,
            ),
            helper.make_node(
                "Conv",
                [blocked_in, *conv.input[1:]],
                [blocked_out],
                conv.name,  # the same name: profiles still tell it apart
                domain=NCHWC_DOMAIN,
                group=groups,
                kernel_shape=[height, width],
                pads=attributes.get("pads", [0, 0, 0, 0]),
                strides=attributes.get("strides", [1, 1]),
                dilations=attributes.get("dilations", [1, 1]),
            ),
            helper.make_node(
                "ReorderOutput",
                [blocked_out],
                [conv.output[0]],
                conv.name + "/ReorderOutput",
                domain=NCHWC_DOMAIN,
                channels=groups * match.out_channels,
            ),
        ]
    nodes = [new for node in graph.node for new in replacements.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == NCHWC_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(NCHWC_DOMAIN, 1))
    return len(matches)


def blocked_graph(path: str | Path, open_session, open_reference=None):
    """``(session, count)``: the graph at ``path`` with ``count`` per-sample convolutions on
    the blocked kernels and the blocked layout carried through LDNet's joins
    (``nchwc_layout``), or None where there is nothing to rewrite, no blocked kernels here,
    or the rewritten graph does not give the plain one's outputs (then with a one-line
    warning).

    ``open_session(source, optimized_to=None, optimize=True)`` opens a session on a path or
    serialized bytes: with ``optimized_to``, ONNX Runtime saves the graph it optimized there;
    with ``optimize=False`` it runs the graph as given. The plain graph for the check is
    opened by ``open_reference`` (default ``open_session``)."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None
    import onnx

    model = onnx.load(str(path))
    fixed_shapes = all(
        dim.HasField("dim_value")
        for item in model.graph.input
        for dim in item.type.tensor_type.shape.dim
    )
    # A dynamic-batch graph has no per-sample convolutions (it mixes LDConv's outputs).
    if not fixed_shapes or not _per_sample_convs(model.graph):
        return None
    block = block_size()
    if not block:
        return None
    try:
        shapes = static_shapes(model)
        count = block_per_sample_convs(model, block)
        if not count:
            return None
        with tempfile.TemporaryDirectory(prefix="ldnet-nchwc-") as folder:
            optimized_path = Path(folder) / "optimized.onnx"
            # ONNX Runtime's own layout pass first, on this CPU; its result is what ours reads.
            open_session(model.SerializeToString(), optimized_to=optimized_path)
            optimized = onnx.load(str(optimized_path))
        carry_blocked_layout(optimized, shapes, block)
        blocked = open_session(optimized.SerializeToString(), optimize=False)
        plain = (open_reference or open_session)(str(path))
        feed = {
            item.name: np.random.default_rng(0).standard_normal(item.shape).astype(np.float32)
            for item in plain.get_inputs()
        }
        expected, got = plain.run(None, feed)[0], blocked.run(None, feed)[0]
        scale = float(np.abs(expected).max()) or 1.0
        error = float(np.abs(got - expected).max()) / scale
        if not error <= PARITY_TOLERANCE:  # also catches NaN
            raise ValueError(f"outputs moved by {error:.1e} of their scale")
    except Exception as error:  # noqa: BLE001 - any surprise: keep the plain graph
        print(
            f"warning: {path}: ONNX Runtime's blocked convolutions not used for LDConv "
            f"({error}); running the plain graph",
            file=sys.stderr,
        )
        return None
    return blocked, count
