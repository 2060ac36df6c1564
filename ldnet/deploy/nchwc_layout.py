"""Keep an ONNX Runtime-optimized graph in the blocked (NCHWc) layout across LDNet's joins.

ONNX Runtime's own layout pass (its NCHWc transformer) carries the blocked layout only
through the operators it knows: convolutions, pooling, ReLU/sigmoid/tanh, additions of two
blocked tensors, nearest upsampling. The official LDNet puts a LeakyReLU(0.01) after every
fusion sum and residual, and LDConv folds the batch into the channels with a Reshape, so the
graph it leaves goes back to the plain layout and forth again (``ReorderOutput`` ->
LeakyRelu/Add/Reshape -> ``ReorderInput``) about two hundred times a run at batch 8, and
those joins cannot be fused into the convolutions before them.

This pass works on the graph ONNX Runtime optimized and saved, on the machine that runs it
(the block belongs to the CPU), and knows three facts about the layout:

- an elementwise operator (an activation, or an addition of two tensors of one shape) gives
  the same numbers in any layout, so it runs on the blocked tensors as they are;
- with channels in whole blocks (no padding), the blocked layout of (B, C, H, W) is, byte
  for byte, that of (1, B*C, H, W) and of any (B', C', H, W) with B'*C' = B*C and C' in whole
  blocks: LDConv's batch-folding reshapes run on the blocked tensor as they are;
- global average pooling has a blocked kernel.

It then does what ONNX Runtime's pass does for its own operators: an addition whose one input
is a blocked convolution used by nothing else becomes that convolution's accumulated input,
and an activation after such a convolution becomes its fused activation. Only tensors whose
channels fill whole blocks take part (padding channels would not stay zero). The plain value
of a tensor stays available (a ``ReorderOutput``) wherever an operator still reads it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

NCHWC_DOMAIN = "com.microsoft.nchwc"
# Elementwise activations: they run on blocked tensors as they are, and the blocked
# convolution fuses each of them (MLAS's activation kinds, by ONNX name).
ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh")


def static_shapes(model) -> dict[str, list[int]]:
    """Tensor name -> shape, for the tensors of ``model`` (a fixed-shape ``onnx.ModelProto``)
    whose shape ONNX's inference settles."""
    from onnx import TensorProto, helper, shape_inference

    graph = model.graph
    # Shapes need the values of small tensors only (Reshape targets, Resize scales): the large
    # ones (LDConv's banks, 100 MB for ldnet_w32) enter as typed inputs, which spares ONNX a
    # copy of the whole model (1-2 s of a session build).
    kept, typed = [], []
    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.INT64 or int(np.prod(tensor.dims)) <= 64:
            kept.append(tensor)
        else:
            typed.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    light = helper.make_model(
        helper.make_graph(
            graph.node, graph.name, [*graph.input, *typed], graph.output, initializer=kept
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    inferred = shape_inference.infer_shapes(light)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    shapes = {}
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = [dim.dim_value for dim in dims]
    return shapes


def _attributes(node) -> dict:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _is(node, op_type: str, domain: str = "") -> bool:
    return node is not None and node.op_type == op_type and node.domain == domain


class _Layout:
    """Which plain tensors also exist in the blocked layout, and under which name."""

    def __init__(self, graph, shapes: dict[str, list[int]], block: int):
        self.shapes, self.block = shapes, block
        self.blocked: dict[str, str] = {}  # plain name -> blocked name
        # Tensors ONNX Runtime already reorders into the blocked layout for some consumer:
        # any other consumer may use that copy too (the final sort moves it up).
        self.reordered: dict[str, str] = {}
        for node in graph.node:
            if _is(node, "ReorderOutput", NCHWC_DOMAIN):
                attributes = _attributes(node)
                if not attributes.get("channels_last") and self.whole_blocks(node.output[0]):
                    self.blocked[node.output[0]] = node.input[0]
            elif _is(node, "ReorderInput", NCHWC_DOMAIN) and self.whole_blocks(node.input[0]):
                self.reordered.setdefault(node.input[0], node.output[0])

    def whole_blocks(self, name: str) -> bool:
        shape = self.shapes.get(name)
        return shape is not None and len(shape) == 4 and shape[1] % self.block == 0

    def of(self, name: str) -> str | None:
        """The blocked tensor holding ``name``'s values, None if there is none."""
        if not self.whole_blocks(name):
            return None
        return self.blocked.get(name) or self.reordered.get(name)


def _blocked_twin(node, layout: _Layout):
    """The node that computes ``node``'s output in the blocked layout from blocked inputs, or
    None where the layout facts do not cover it."""
    from onnx import helper

    if node.domain or not layout.whole_blocks(node.output[0]):
        return None
    inputs = list(node.input)
    twin_output = node.output[0] + "/nchwc"
    if node.op_type in ACTIVATIONS and layout.of(inputs[0]):
        twin = helper.make_node(node.op_type, [layout.of(inputs[0])], [twin_output])
        twin.attribute.extend(node.attribute)
    elif node.op_type in ("Add", "Mul") and all(layout.of(name) for name in inputs):
        if layout.shapes[inputs[0]] != layout.shapes[inputs[1]]:
            return None  # a broadcast: the layouts of the two operands differ
        twin = helper.make_node(node.op_type, [layout.of(name) for name in inputs], [twin_output])
    elif node.op_type == "Reshape" and layout.of(inputs[0]):
        before, after = layout.shapes[inputs[0]], layout.shapes[node.output[0]]
        if before[2:] != after[2:] or before[0] * before[1] != after[0] * after[1]:
            return None  # moves values across rows or columns: not a relabelling of blocks
        twin = helper.make_node("Reshape", [layout.of(inputs[0]), inputs[1]], [twin_output])
    elif node.op_type == "GlobalAveragePool" and layout.of(inputs[0]):
        twin = helper.make_node(
            "GlobalAveragePool", [layout.of(inputs[0])], [twin_output], domain=NCHWC_DOMAIN
        )
    else:
        return None
    twin.name = node.name + "/nchwc"
    return twin


def _carry(graph, layout: _Layout) -> list:
    """The graph's nodes with every node the layout facts cover replaced by its blocked twin
    (plus a ``ReorderOutput`` to its plain name) and every ``ReorderInput`` of a tensor
    already held blocked dropped (its readers renamed)."""
    from onnx import helper

    renamed: dict[str, str] = {}
    nodes = []
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        if _is(node, "ReorderInput", NCHWC_DOMAIN):
            held = layout.of(node.input[0])
            if held and held != node.output[0]:
                renamed[node.output[0]] = held
                continue
        twin = _blocked_twin(node, layout)
        if twin is None:
            nodes.append(node)
            continue
        layout.blocked[node.output[0]] = twin.output[0]
        plain = helper.make_node(
            "ReorderOutput",
            [twin.output[0]],
            [node.output[0]],
            node.name + "/ReorderOutput",
            domain=NCHWC_DOMAIN,
            channels=layout.shapes[node.output[0]][1],
        )
        nodes += [twin, plain]
    graph_outputs = {output.name for output in graph.output}
    if graph_outputs & set(renamed):
        raise ValueError("a graph output would lose its producer")
    return nodes


def _fuse_into_convolutions(nodes: list, graph, blocked_shapes: dict[str, list[int]]) -> list:
    """ONNX Runtime's blocked-convolution fusions, for the joins ``_carry`` made blocked: an
    addition into the convolution's accumulated input, then an activation. Both also through
    a batch-folding Reshape after the convolution (LDConv's, whose residual addition and ReLU
    follow it): an elementwise activation commutes with it, and the other addend is folded
    the same way (one more Reshape, which ONNX Runtime runs without a copy).
    ``blocked_shapes`` are the plain shapes of blocked tensors, by blocked name."""
    from onnx import helper, numpy_helper

    graph_outputs = {output.name for output in graph.output}

    def single_use_conv(name: str, producers: dict, uses: Counter):
        node = producers.get(name)
        if (
            _is(node, "Conv", NCHWC_DOMAIN)
            and uses[name] == 1
            and name not in graph_outputs
            and "activation" not in _attributes(node)
        ):
            return node
        return None

    def index(nodes):
        producers = {output: node for node in nodes for output in node.output}
        uses = Counter(name for node in nodes for name in node.input)
        return producers, uses

    def folding_reshape(name: str, producers: dict, uses: Counter):
        """The Reshape making ``name`` from a convolution's output, if nothing else reads it."""
        node = producers.get(name)
        if _is(node, "Reshape") and uses[name] == 1 and name not in graph_outputs:
            return node
        return None

    producers, uses = index(nodes)
    dropped, added = set(), []
    for node in nodes:
        if not _is(node, "Add"):
            continue
        for side in (0, 1):
            other = node.input[1 - side]
            reshape = folding_reshape(node.input[side], producers, uses)
            conv = single_use_conv(
                reshape.input[0] if reshape else node.input[side], producers, uses
            )
            if conv is None or len(conv.input) > 3 or other == conv.input[0]:
                continue
            if reshape is not None:
                shape = blocked_shapes.get(conv.output[0])
                if shape is None:
                    continue
                shape_name = conv.name + "/accumulated_shape"
                graph.initializer.append(
                    numpy_helper.from_array(np.array(shape, np.int64), shape_name)
                )
                folded = helper.make_node(
                    "Reshape", [other, shape_name], [conv.name + "/accumulated"],
                    conv.name + "/accumulated_reshape",
                )  # fmt: skip
                added.append(folded)
                other = folded.output[0]
            conv.input.extend([""] * (3 - len(conv.input)) + [other])
            (reshape or conv).output[0] = node.output[0]
            producers[node.output[0]] = reshape or conv
            dropped.add(id(node))
            break
    nodes = [node for node in nodes if id(node) not in dropped] + added

    producers, uses = index(nodes)
    dropped = set()
    for node in nodes:
        if node.domain or node.op_type not in ACTIVATIONS:
            continue
        reshape = folding_reshape(node.input[0], producers, uses)
        conv = single_use_conv(reshape.input[0] if reshape else node.input[0], producers, uses)
        if conv is None:
            continue
        conv.attribute.append(helper.make_attribute("activation", node.op_type))
        if node.op_type == "LeakyRelu":
            alpha = _attributes(node).get("alpha", 0.01)
            conv.attribute.append(helper.make_attribute("activation_params", [alpha]))
        (reshape or conv).output[0] = node.output[0]
        dropped.add(id(node))
    return [node for node in nodes if id(node) not in dropped]


def _live(nodes: list, graph_outputs: set[str]) -> list:
    """``nodes`` without those whose outputs nothing reads (the reorders ``_carry`` made
    idle), so that the uses ``_fuse_into_convolutions`` counts are real ones."""
    while True:
        read = {name for node in nodes for name in node.input} | graph_outputs
        live = [node for node in nodes if any(name in read for name in node.output)]
        if len(live) == len(nodes):
            return nodes
        nodes = live


def _in_order(nodes: list) -> list:
    """``nodes`` in an order that computes every input before its reader."""
    producers = {output: position for position, node in enumerate(nodes) for output in node.output}
    ordered, state = [], [0] * len(nodes)  # 0 unvisited, 1 on the path, 2 placed
    for start in range(len(nodes)):
        stack = [(start, 0)]
        while stack:
            position, next_input = stack.pop()
            if next_input == 0:
                if state[position] == 2:
                    continue
                state[position] = 1
            inputs = nodes[position].input
            while next_input < len(inputs) and (
                inputs[next_input] not in producers or state[producers[inputs[next_input]]] == 2
            ):
                next_input += 1
            if next_input == len(inputs):
                state[position] = 2
                ordered.append(nodes[position])
                continue
            producer = producers[inputs[next_input]]
            if state[producer] == 1:
                raise ValueError("the rewritten graph has a cycle")
            stack += [(position, next_input), (producer, 0)]
    return ordered


def carry_blocked_layout(model, shapes: dict[str, list[int]], block: int) -> int:
    """Rewrite ``model`` (ONNX Runtime's optimized graph, an ``onnx.ModelProto``, in place)
    to stay in the blocked layout through LDNet's joins; ``shapes`` are the plain tensors'
    shapes (``static_shapes`` of the graph before ONNX Runtime optimized it) and ``block``
    the block it used. Returns how many reorders the graph lost."""
    graph = model.graph
    before = sum(node.op_type.startswith("Reorder") for node in graph.node)
    graph_outputs = {output.name for output in graph.output}
    layout = _Layout(graph, shapes, block)
    nodes = _live(_carry(graph, layout), graph_outputs)
    blocked_shapes = {
        blocked: shapes[plain] for plain, blocked in layout.blocked.items() if plain in shapes
    }
    nodes = _in_order(_fuse_into_convolutions(nodes, graph, blocked_shapes))
    del graph.node[:]
    graph.node.extend(nodes)
    return before - sum(node.op_type.startswith("Reorder") for node in graph.node)
