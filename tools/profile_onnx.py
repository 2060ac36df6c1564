"""Where ONNX Runtime spends a preset's time: operator time by kind, from its own profiler.

    python tools/profile_onnx.py --models ldnet hrnet_w32 [--batch 1 8] [--input 256x192]
        [--threads 2] [--runs 10] [--reorders]

Each model runs as `PoseEstimator` runs it (a fixed-batch graph per batch size, BatchNorm
folded, LDConv's per-sample kernels mixed in the graph). Convolutions are split by kind
(dense k x k, depthwise, 1x1) because that split is what tells a light network's time from a
heavy one's; the profiler's own overhead per operator inflates networks with many small
operators, so compare the shares, not the milliseconds, with `ldnet bench`. With
`--reorders`, each layout reorder is told apart by what it serves (the operator its output
feeds or its input comes from, in the graph the session runs), and those ldnet's own
rewrites add (ldnet/deploy/nchwc.py, ldnet/deploy/nchwc_layout.py) are counted on their own.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def conv_kind(weight_shape: list[int]) -> str:
    out_channels, in_per_group, height, width = weight_shape
    if height == width == 1:
        return "Conv 1x1"
    if in_per_group == 1:
        return f"Conv depthwise {height}x{width}"
    return f"Conv dense {height}x{width}"


def computed_kernel_convs(model_path) -> set[str]:
    """Names of the Conv nodes whose kernel is computed in the graph (LDConv's per-sample
    convolutions), not a stored initializer."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    stored = {initializer.name for initializer in graph.initializer}
    return {
        node.name for node in graph.node if node.op_type == "Conv" and node.input[1] not in stored
    }


def reorder_roles(optimized_path) -> dict[str, str]:
    """Reorder node name -> what it serves in the optimized graph at ``optimized_path``:
    "to Add" (a ReorderOutput feeding additions), "from LeakyRelu" (a ReorderInput taking
    its input from one), "of ldnet's rewrites" (added by ldnet.deploy.nchwc or nchwc_layout)."""
    import onnx

    graph = onnx.load(str(optimized_path)).graph
    producers = {output: node for node in graph.node for output in node.output}
    consumers = defaultdict(set)
    for node in graph.node:
        for name in node.input:
            consumers[name].add(node.op_type)
    roles = {}
    for node in graph.node:
        if not node.op_type.startswith("Reorder"):
            continue
        if node.name.endswith(("/ReorderInput", "/ReorderOutput")):
            roles[node.name] = "of ldnet's rewrites"
        elif node.op_type == "ReorderOutput":
            roles[node.name] = "to " + ", ".join(sorted(consumers[node.output[0]]))
        else:
            producer = producers.get(node.input[0])
            roles[node.name] = "from " + (producer.op_type if producer else "the input")
    return roles


def operator_times(
    profile_path: str, dynamic: set[str] = frozenset(), reorders: dict[str, str] | None = None
) -> dict[str, list[float]]:
    """Microseconds per operator kind (convolutions by kind; those in ``dynamic``, by node
    name, as LDConv's per-sample ones; reorders by ``reorders``' roles) over every run."""
    times: dict[str, list[float]] = defaultdict(list)
    for event in json.loads(Path(profile_path).read_text()):
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        kind = event["args"]["op_name"]
        node = event["name"].removesuffix("_kernel_time")
        if reorders and node in reorders:
            kind = f"{kind} {reorders[node]}"
        if kind in ("Conv", "FusedConv"):
            shapes = [next(iter(shape.values())) for shape in event["args"]["input_type_shape"]]
            if node in dynamic:
                kind = "Conv per-sample (LDConv)"
            elif kind == "Conv":
                kind = conv_kind(shapes[1])
        times[kind].append(event["dur"])
    return times


def profile(
    model_name: str, batch: int, input_size, threads: int, runs: int, folder, reorders=False
) -> tuple[dict[str, list[float]], int]:
    """The preset's fixed-batch graph run ``runs`` times under ONNX Runtime's profiler:
    microseconds per operator kind (``operator_times``) and the runs the profile holds (with
    the blocked convolutions, the check's run too)."""
    from ldnet.deploy.export import INPUT_NAME
    from ldnet.inference.backends import export_fixed_batch, onnx_session
    from ldnet.models import build_model

    model_folder = Path(folder) / model_name
    model_folder.mkdir(exist_ok=True)
    path = export_fixed_batch(build_model(model_name), batch, input_size, model_folder)
    prefix = str(Path(folder) / f"profile-{model_name}-{batch}")
    optimized = Path(folder) / f"optimized-{model_name}-{batch}.onnx" if reorders else None
    session = onnx_session(path, threads, prefix, optimized_path=optimized)
    feed = {INPUT_NAME: np.random.default_rng(0).random((batch, 3, *input_size), np.float32)}
    for _ in range(runs):
        session.run(None, feed)
    roles = reorder_roles(optimized) if reorders else None
    profile_path = session.end_profiling()
    events = json.loads(Path(profile_path).read_text())
    recorded = sum(event.get("name") == "model_run" for event in events) or runs
    return operator_times(profile_path, computed_kernel_convs(path), roles), recorded


def print_shares(title: str, time_by_kind: dict, runs: int, calls_per_run=None) -> None:
    """The operator time per run and each kind's share of it (kinds under 0.5 % left out);
    shared with tools/profile_pytorch.py."""
    total = sum(time_by_kind.values())
    print(f"{title}: {total / runs / 1000:.1f} ms of operator time per run")
    for kind, value in sorted(time_by_kind.items(), key=lambda item: -item[1]):
        if value / total >= 0.005:
            calls = "" if calls_per_run is None else f"  {calls_per_run[kind]:4d} per run"
            print(f"  {kind:36s} {100 * value / total:5.1f} %{calls}")


def parse_arguments(description: str, reorders_option: bool = False) -> argparse.Namespace:
    """The options both profiling tools take; ``input_size`` parsed from ``--input``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", nargs="+", default=["ldnet_w32", "hrnet_w32"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--input", default="256x192", help="HxW")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    if reorders_option:
        parser.add_argument(
            "--reorders", action="store_true", help="tell layout reorders apart by what they serve"
        )
    args = parser.parse_args()
    args.input_size = tuple(int(value) for value in args.input.split("x"))
    return args


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0], reorders_option=True)
    with tempfile.TemporaryDirectory(prefix="ldnet-profile-") as folder:
        for model_name in args.models:
            for batch in args.batch:
                times, runs = profile(
                    model_name, batch, args.input_size, args.threads, args.runs, folder,
                    args.reorders,
                )  # fmt: skip
                print_shares(
                    f"{model_name}, batch {batch}",
                    {kind: sum(values) for kind, values in times.items()},
                    runs,
                    {kind: len(values) // runs for kind, values in times.items()},
                )


if __name__ == "__main__":
    main()
