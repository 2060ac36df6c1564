"""LDConv's per-sample depthwise convolutions in ONNX Runtime's blocked (NCHWc) layout.

On x86 CPUs ONNX Runtime runs convolutions in a blocked layout (NCHWc: channels in blocks of
8 or 16, innermost) through its fast MLAS kernels, but only convolutions whose kernel is a
constant: its NCHWc optimiser reorders the weights once, when the session is made. LDConv's
depthwise kernel is computed from the input, so in a fixed-batch graph (the "aggregate"
execution) each one stays in the plain NCHW layout: its tensor is reordered out of the
blocked layout before it and back after it, and the convolution itself runs through the
generic grouped path. Measured on the 2-core Xeon (ONNX Runtime 1.32, 2 threads), one such
convolution on 112 x 32 x 24 takes 313 us, the same one in the blocked kernel 45 us, plus
58 us of reordering that the rewrite also removes.

MLAS's blocked convolution reads its kernel when it runs, so it needs no constant: the
rewrite below lets ONNX Runtime optimise the graph (all its usual fusions, NCHWc everywhere it
can), then replaces every reorder -> depthwise convolution -> reorder chain by the blocked
convolution on the blocked tensor. The kernel has to be in the blocked weight layout too:
LDConv's bank of K kernels is reordered once, so that each sample's mix comes out blocked
(any other computed kernel is reordered in the graph, C x k x k numbers). In the blocked
layout the batch folds into the channels for free when C is a whole number of blocks: the
memory of (B, C/b, H, W, b) is that of (1, B*C/b, H, W, b).

The result is specific to the machine that optimised it (block size, ONNX Runtime's internal
operators), so it is only ever made at run time, in a temporary folder, for the session that
uses it; exported files stay portable. Where ONNX Runtime has no blocked kernels (no NCHWc
optimiser output, e.g. ARM) or a chain does not look as expected, the graph runs as optimised.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NCHWC_DOMAIN = "com.microsoft.nchwc"
# The attributes ONNX Runtime's blocked Conv shares with ONNX's Conv.
_CONV_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def optimise_to_file(path: str | Path, optimised_path: str | Path) -> None:
    """Let ONNX Runtime optimise ``path`` fully (NCHWc included) and save the result."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(optimised_path)
    # The session only exists to write the optimised graph; its warning that the file is
    # hardware-specific is the point here, not news.
    options.log_severity_level = 3
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@functools.cache
def nchwc_block_size() -> int | None:
    """Channels per block of this machine's NCHWc layout, or None where ONNX Runtime has none.

    Read off ONNX Runtime itself: a depthwise kernel whose every value is its channel index
    comes back reordered as (C/b, k, k, b), so its values run 0, 1, ..., b-1 before repeating.
    """
    channels = 64
    kernel = np.repeat(np.arange(channels, dtype=np.float32), 9).reshape(channels, 1, 3, 3)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=channels, pads=[1, 1, 1, 1])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(kernel, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory(prefix="ldnet-nchwc-") as folder:
        onnx.save(model, f"{folder}/probe.onnx")
        optimise_to_file(f"{folder}/probe.onnx", f"{folder}/optimised.onnx")
        optimised = onnx.load(f"{folder}/optimised.onnx")
    if not any(node.domain == NCHWC_DOMAIN for node in optimised.graph.node):
        return None
    (weights,) = [numpy_helper.to_array(tensor) for tensor in optimised.graph.initializer]
    flat = weights.reshape(-1)
    block = int(np.argmax(flat[1:] <= flat[:-1])) + 1
    return block if channels % block == 0 and block > 1 else None


def _attributes(node) -> dict:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _is(node, domain: str, op_type: str) -> bool:
    return node is not None and (node.domain, node.op_type) == (domain, op_type)


def _match_chain(conv, producer, consumers, block: int):
    """The nodes around a computed-kernel depthwise ``conv`` that the blocked convolution
    replaces: (reorder out, fold, unfold, reorder in, channels), or None where the chain is
    not the one ONNX Runtime leaves around such a convolution."""
    attributes = _attributes(conv)
    # A fixed batch B > 1 runs as one convolution of B*C groups between two Reshapes.
    fold = producer.get(conv.input[0])
    fold = fold if _is(fold, "", "Reshape") else None
    reorder_out = producer.get(fold.input[0] if fold else conv.input[0])
    if not _is(reorder_out, NCHWC_DOMAIN, "ReorderOutput"):
        return None
    reorder_attributes = _attributes(reorder_out)
    channels, groups = reorder_attributes["channels"], attributes.get("group", 1)
    if (
        reorder_attributes.get("channels_last", 0)
        or channels % block
        or groups % channels
        or (fold is None) != (groups == channels)
    ):
        return None
    unfold = None
    if fold:
        after = consumers.get(conv.output[0], [])
        if len(after) != 1 or not _is(after[0], "", "Reshape"):
            return None
        (unfold,) = after
    readers = consumers.get((unfold or conv).output[0], [])
    if len(readers) != 1 or not _is(readers[0], NCHWC_DOMAIN, "ReorderInput"):
        return None
    (reorder_in,) = readers
    if _attributes(reorder_in).get("channels_last", 0):
        return None
    return reorder_out, fold, unfold, reorder_in, channels


def block_dynamic_depthwise(model, block: int) -> int:
    """Rewrite, in place, each reorder -> computed-kernel depthwise Conv -> reorder chain of
    an NCHWc-optimised ``model`` into one blocked Conv; returns how many were rewritten."""
    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {tensor.name for tensor in graph.initializer}
    replaced: dict[int, list] = {}  # id(depthwise conv) -> the nodes that take its place
    removed: set[int] = set()

    for conv in graph.node:
        if not _is(conv, "", "Conv") or conv.input[1] in constants:
            continue
        chain = _match_chain(conv, producer, consumers, block)
        if chain is None:
            continue
        reorder_out, fold, unfold, reorder_in, channels = chain
        attributes = _attributes(conv)
        prefix = conv.name or conv.output[0]
        if _permute_kernel_bank(graph, conv, producer, consumers, channels, block):
            nodes, blocked_kernel = [], conv.input[1]
        else:
            nodes, blocked_kernel = _blocked_kernel_nodes(graph, conv, block, prefix)
        blocked_input = reorder_out.input[0]
        if fold:
            nodes.append(
                helper.make_node("Reshape", [blocked_input, fold.input[1]], [f"{prefix}/xb"])
            )
            blocked_input = f"{prefix}/xb"
        blocked_output = f"{prefix}/yb" if unfold else reorder_in.output[0]
        nodes.append(
            helper.make_node(
                "Conv",
                [blocked_input, blocked_kernel, *conv.input[2:]],
                [blocked_output],
                name=f"{prefix}/blocked",
                domain=NCHWC_DOMAIN,
                **{key: value for key, value in attributes.items() if key in _CONV_ATTRIBUTES},
            )
        )
        if unfold:
            nodes.append(
                helper.make_node("Reshape", [blocked_output, unfold.input[1]], reorder_in.output)
            )
        replaced[id(conv)] = nodes
        removed.update(id(node) for node in (conv, fold, unfold, reorder_in) if node)
        # The reorder out of the blocked layout goes too when nothing else reads it.
        if {id(node) for node in consumers[reorder_out.output[0]]} <= removed:
            removed.add(id(reorder_out))

    # Each replacement takes its convolution's place, so the graph stays in topological order.
    nodes = []
    for node in graph.node:
        nodes.extend(replaced.get(id(node), []))
        if id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replaced)


def _permute_kernel_bank(graph, conv, producer, consumers, channels: int, block: int) -> bool:
    """Where the kernel is LDConv's ``attention @ bank`` reshaped, and nothing else reads the
    bank, reorder the bank's columns once so that the product comes out in the blocked layout
    (the same for every sample: C is a whole number of blocks). True if done."""
    reshape = producer.get(conv.input[1])
    matmul = producer.get(reshape.input[0]) if _is(reshape, "", "Reshape") else None
    banks = {tensor.name: tensor for tensor in graph.initializer}
    if (
        not _is(matmul, "", "MatMul")
        or matmul.input[1] not in banks
        or len(consumers[matmul.input[1]]) != 1
        or len(consumers[matmul.output[0]]) != 1
        or len(consumers[reshape.output[0]]) != 1
    ):
        return False
    bank = numpy_helper.to_array(banks[matmul.input[1]])
    if bank.ndim != 2 or bank.shape[1] % channels:
        return False
    kernels, taps = bank.shape[0], bank.shape[1] // channels
    # Columns (C, k*k) -> (C/b, k*k, b).
    blocked = bank.reshape(kernels, channels // block, block, taps).transpose(0, 1, 3, 2)
    banks[matmul.input[1]].CopyFrom(
        numpy_helper.from_array(np.ascontiguousarray(blocked).reshape(bank.shape), matmul.input[1])
    )
    return True


def _blocked_kernel_nodes(graph, conv, block: int, prefix: str):
    """Nodes that reorder any (B*C, 1, k, k) kernel into the blocked layout, and its name."""
    kernel, groups = conv.input[1], _attributes(conv)["group"]
    blocks = np.array([groups // block, block, -1], np.int64)
    graph.initializer.append(numpy_helper.from_array(blocks, f"{prefix}/blocks"))
    # (B*C, 1, k, k) -> (B*C/b, b, k*k) -> (B*C/b, k*k, b), then back to the kernel's shape.
    nodes = [
        helper.make_node("Shape", [kernel], [f"{prefix}/kernel_shape"]),
        helper.make_node("Reshape", [kernel, f"{prefix}/blocks"], [f"{prefix}/w3"]),
        helper.make_node("Transpose", [f"{prefix}/w3"], [f"{prefix}/w3t"], perm=[0, 2, 1]),
        helper.make_node("Reshape", [f"{prefix}/w3t", f"{prefix}/kernel_shape"], [f"{prefix}/wb"]),
    ]
    return nodes, f"{prefix}/wb"


def blocked_graph(path: str | Path, folder: str | Path) -> Path | None:
    """``path`` optimised by ONNX Runtime with its dynamic depthwise convolutions blocked,
    written into ``folder``; None where there is nothing to gain (no NCHWc, nothing found).
    The file is already optimised: open it with graph optimisations off."""
    block = nchwc_block_size()
    if block is None:
        return None
    optimised_path = Path(folder) / f"{Path(path).stem}-optimised.onnx"
    optimise_to_file(path, optimised_path)
    model = onnx.load(str(optimised_path))
    if block_dynamic_depthwise(model, block) == 0:
        return None
    blocked_path = Path(folder) / f"{Path(path).stem}-blocked.onnx"
    onnx.save(model, str(blocked_path))
    return blocked_path
