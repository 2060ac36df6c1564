"""Each distinct LDConv layer of a network, timed alone in every execution.

Whole-network figures say which single execution is fastest; a per-layer table says whether
a rule by layer shape (what ``"auto"`` is) would beat every single one, and by how much. The
layers are the network's own modules (after BatchNorm folding for inference), fed random
inputs of the shapes they see at the plan's input size; layers of the same shape are timed
once and counted as often as they occur.

Rows: one per (mode, dtype, batch, layer, execution) with milliseconds per call; the summary
adds, per (mode, dtype, batch), each execution's total over the network's LDConvs and the
total of the per-layer fastest, which is the best any rule by shape could do.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ldnet.bench.models import prepare_pytorch_model
from ldnet.bench.timing import calls_per_burst, seconds_per_call
from ldnet.models import build_model
from ldnet.models.ldconv import DynamicConv2d

# The executions a layer can run ("auto" only picks among them).
FORMS = ("aggregate", "patches", "mixture")


@dataclass(frozen=True)
class LayerPlan:
    model: str = "ldnet_w32"
    input_size: tuple[int, int] = (256, 192)
    num_joints: int = 17
    inference_batches: tuple[int, ...] = (1, 64)
    dtypes: tuple[str, ...] = ("float32", "float16")
    train_batches: tuple[int, ...] = (32,)  # forward + backward, autocast float16 on CUDA
    bursts: int = 3
    min_burst_s: float = 0.02


@dataclass
class Layer:
    module: DynamicConv2d
    input_shape: tuple[int, ...]  # (C, H, W) without the batch
    count: int

    @property
    def name(self) -> str:
        m = self.module
        _, height, width = self.input_shape
        return (
            f"{m.in_channels}->{m.out_channels} {m.kernel_size}x{m.kernel_size}/{m.stride} "
            f"@{height}x{width}"
        )


def distinct_layers(model: torch.nn.Module, input_size: tuple[int, int]) -> list[Layer]:
    """The model's LDConvs, one per (configuration, input shape), with how often each occurs;
    found by one batch-1 forward pass on the CPU."""
    found: dict[tuple, Layer] = {}

    def record(module: DynamicConv2d, args: tuple) -> None:
        shape = tuple(args[0].shape[1:])
        key = (module.in_channels, module.out_channels, module.kernel_size, module.stride, shape)
        if key in found:
            found[key].count += 1
        else:
            found[key] = Layer(module, shape, 1)

    modules = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    hooks = [m.register_forward_pre_hook(record) for m in modules]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
    return list(found.values())


def _median_ms(run: Callable, plan: LayerPlan, synchronize: Callable) -> float:
    for _ in range(2):  # warm-up: cuDNN's choice, the allocator's blocks
        run()
    iterations = calls_per_burst(run, plan.min_burst_s, synchronize)
    times = [seconds_per_call(run, iterations, synchronize) for _ in range(plan.bursts)]
    return statistics.median(times) * 1e3


def _inference_run(layer: Layer, batch: int, dtype, device) -> Callable:
    x = torch.randn(batch, *layer.input_shape, device=device, dtype=dtype)
    if device.type == "cpu":  # as the CPU backend feeds its layers
        x = x.contiguous(memory_format=torch.channels_last)
    module = layer.module

    def run():
        with torch.inference_mode():
            return module(x)

    return run


def _training_run(layer: Layer, batch: int, device) -> Callable:
    amp = device.type == "cuda"
    x = torch.randn(batch, *layer.input_shape, device=device, requires_grad=True)
    module = layer.module

    def run():
        with torch.autocast(device.type, torch.float16, enabled=amp):
            out = module(x)
        out.float().sum().backward()

    return run


def measure_layers(plan: LayerPlan, device: str | torch.device) -> dict:
    """{"rows": [...], "summary": [...]} for ``plan.model``'s LDConv layers on ``device``."""
    device = torch.device(device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    channels_last = device.type == "cpu"  # as the inference backend runs each device
    rows = []
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        for dtype_name in plan.dtypes:
            dtype = getattr(torch, dtype_name)
            model = prepare_pytorch_model(plan.model, plan.num_joints, True, channels_last)
            layers = distinct_layers(model, plan.input_size)
            model.to(device, dtype)
            for batch in plan.inference_batches:
                for layer in layers:
                    for form in FORMS:
                        layer.module.execution = form
                        ms = _median_ms(_inference_run(layer, batch, dtype, device), plan,
                                        synchronize)  # fmt: skip
                        rows.append(_row("inference", dtype_name, batch, layer, form, ms))
            del model, layers
        model = build_model(plan.model, plan.num_joints).train()
        layers = distinct_layers(model, plan.input_size)
        model.to(device)
        mode = "train-amp" if device.type == "cuda" else "train"
        for batch in plan.train_batches:
            for layer in layers:
                for form in FORMS:
                    layer.module.execution = form
                    ms = _median_ms(_training_run(layer, batch, device), plan, synchronize)
                    rows.append(_row(mode, "float32", batch, layer, form, ms))
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    return {"model": plan.model, "rows": rows, "summary": summarise(rows)}


def _row(mode, dtype, batch, layer: Layer, execution, ms) -> dict:
    return {"mode": mode, "dtype": dtype, "batch": batch, "layer": layer.name,
            "count": layer.count, "execution": execution, "ms": ms}  # fmt: skip


def summarise(rows: list[dict]) -> list[dict]:
    """Per (mode, dtype, batch): each execution's total ms over all LDConvs (each layer
    times its count), the per-layer fastest total, and which execution each layer prefers."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["dtype"], row["batch"]), []).append(row)
    summary = []
    for (mode, dtype, batch), group in groups.items():
        totals = {form: 0.0 for form in FORMS}
        best_total, best_by_layer = 0.0, {}
        for layer in dict.fromkeys(row["layer"] for row in group):
            of_layer = [row for row in group if row["layer"] == layer]
            for row in of_layer:
                totals[row["execution"]] += row["ms"] * row["count"]
            best = min(of_layer, key=lambda row: row["ms"])
            best_total += best["ms"] * best["count"]
            best_by_layer[layer] = best["execution"]
        summary.append(
            {"mode": mode, "dtype": dtype, "batch": batch, "total_ms": totals,
             "per_layer_best_ms": best_total, "best_by_layer": best_by_layer}
        )  # fmt: skip
    return summary


def print_summary(result: dict) -> None:
    print(f"LDConv layers of {result['model']} alone (total ms per network, all layers):")
    for entry in result["summary"]:
        totals = "  ".join(f"{form} {ms:.2f}" for form, ms in entry["total_ms"].items())
        print(
            f"  {entry['mode']:<9} {entry['dtype']:<7} batch {entry['batch']:>3}: {totals}  "
            f"per-layer best {entry['per_layer_best_ms']:.2f}"
        )
