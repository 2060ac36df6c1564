"""`make gpu-check`'s measurements: `ldnet` vs `hrnet_w32` on one device, side by side.

Training samples/s (forward with every supervised heatmap, loss, backward, Adam; AMP on
CUDA), inference images/s (BatchNorm folded, float32 and float16), the peak memory of each
case and ONNX Runtime on the exported graph. The same code runs on the CPU at a tiny size,
which is how a machine without CUDA checks it.

As in ``ldnet.bench.models``, cases are timed in interleaved rounds and each reports its median.
Two things differ on a GPU: a CUDA call returns before its kernels have run, so every timed
burst ends with ``torch.cuda.synchronize()``; and each case is built and warmed up alone, so
the allocator's peak above what was allocated before it is that case's own memory (weights,
optimiser state, inputs, activations, workspaces).
"""

from __future__ import annotations

import fnmatch
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ldnet.bench.models import (
    BenchResult,
    has_dynamic_convs,
    macs_per_image,
    prepare_pytorch_model,
)
from ldnet.bench.timing import calls_per_burst, seconds_per_call
from ldnet.engine.step import adam, apply_gradients, forward_loss
from ldnet.inference.backends import allow_recompiles, onnx_session
from ldnet.models import build_model
from ldnet.models.fuse import to_channels_last
from ldnet.models.ldconv import EXECUTIONS, set_ldconv_execution

REFERENCE = "hrnet_w32"
UNMEASURED = "unmeasured: no CUDA device"
ROW_KEYS = (
    "model",
    "batch",
    "images_per_s",
    "ms_per_batch",
    "repeats",
    "iterations_per_repeat",
    "backend",
    "gmac_per_s",
    "execution",
    "peak_memory_mib",
    f"speedup_vs_{REFERENCE}",
    "status",
)

# How every figure is taken, written into the report beside them.
METHOD = {
    "timing": "interleaved rounds (every case once per round), median per case; each timed "
    "burst of calls is enclosed by device synchronisation; warm-up calls first",
    "training": "forward with every supervised heatmap, JointsMSE loss, backward, Adam; "
    "autocast float16 with a GradScaler on CUDA, float32 on the CPU; LDConv in the named "
    "execution (backend pytorch-train[-amp]-<execution>); images_per_s are samples/s",
    "inference": "eval mode, BatchNorm folded into the convolutions, weights and input in "
    "the named dtype; LDConv in the named execution (backend pytorch-<dtype>-<execution>), "
    "'-compile': torch.compile(mode='default') of that model, '-cudagraphs': "
    "torch.compile(mode='reduce-overhead'), its kernels replayed as one CUDA graph",
    "time_budget": "compiled cases are prepared after the eager ones, 'auto' first, CUDA "
    "graphs before the default mode; one that would start after the plan's budget_s is "
    "listed as skipped, not measured",
    "onnxruntime": "the `ldnet export onnx` graph (LDConv 'mixture', dynamic batch), input "
    "and output bound on the provider's device",
    "memory_format": "contiguous (NCHW) on CUDA, channels-last on the CPU, as the engine",
    "peak_memory_mib": "torch.cuda.max_memory_allocated over one call after warm-up and "
    "reset_peak_memory_stats, less what was allocated before the case was built (its "
    "weights, optimiser state, inputs, activations, workspaces); null for ONNX Runtime "
    "(its own allocator) and on the CPU",
    "cudnn_benchmark": True,
}


@dataclass(frozen=True)
class Plan:
    """What to measure. The defaults are the issue's GPU figures at 256x192."""

    models: tuple[str, ...] = ("ldnet_w32", REFERENCE)
    input_size: tuple[int, int] = (256, 192)
    num_joints: int = 17
    train_batches: tuple[int, ...] = (32,)
    inference_batches: tuple[int, ...] = (1, 64)
    dtypes: tuple[str, ...] = ("float32", "float16")
    # LDConv's forms, each timed eagerly (inference and training); a network without LDConv
    # runs "auto" only.
    executions: tuple[str, ...] = EXECUTIONS
    # torch.compile'd inference (CUDA only): default mode for these executions, and
    # reduce-overhead (CUDA graphs: one launch for the whole network) for those.
    compiled_executions: tuple[str, ...] = EXECUTIONS
    cudagraph_executions: tuple[str, ...] = EXECUTIONS
    onnxruntime: bool = True
    repeats: int = 5
    min_repeat_s: float = 0.2
    warmup: int = 3
    # Seconds after which no further compiled case starts (about 20-60 s each): what keeps
    # `make gpu-check` inside one 10-minute device call. None: no limit.
    budget_s: float | None = 330.0
    # fnmatch patterns on "backend/model/batch": only the matching cases (a second, shorter
    # device call); () for all.
    only: tuple[str, ...] = ()

    def backends(self, device: str) -> list[str]:
        """Case labels: ``pytorch-train[-amp]-<execution>``,
        ``pytorch-<dtype>-<execution>[-compile|-cudagraphs]``, ``onnxruntime-<dev>-float32``."""
        train = "pytorch-train-amp" if device == "cuda" else "pytorch-train"
        labels = [f"{train}-{execution}" for execution in self.executions]
        for dtype in self.dtypes:
            labels += [f"pytorch-{dtype}-{execution}" for execution in self.executions]
            if device == "cuda":
                labels += [f"pytorch-{dtype}-{ex}-compile" for ex in self.compiled_executions]
                labels += [f"pytorch-{dtype}-{ex}-cudagraphs" for ex in self.cudagraph_executions]
        if self.onnxruntime:
            labels.append(f"onnxruntime-{device}-float32")
        return labels

    def cases(self, device: str) -> list[tuple[str, str, int]]:
        """(backend, model, batch) of every figure, in the order they are reported."""
        return [
            (backend, model, batch)
            for backend in self.backends(device)
            for model in self.models
            if has_ldconv(model) or label_execution(backend) in (None, "auto")
            for batch in (self.train_batches if "train" in backend else self.inference_batches)
            if not self.only
            or any(fnmatch.fnmatchcase(f"{backend}/{model}/{batch}", p) for p in self.only)
        ]

    def rounds_seconds(self, device: str) -> float:
        """About how long the timed rounds take once every case is prepared."""
        return self.repeats * len(self.cases(device)) * self.min_repeat_s


COMPILED_SUFFIXES = ("-compile", "-cudagraphs")


def compile_mode(backend: str) -> str | None:
    """torch.compile's mode of a case label, or None for an eager one."""
    if backend.endswith("-compile"):
        return "default"
    return "reduce-overhead" if backend.endswith("-cudagraphs") else None


def label_execution(backend: str) -> str | None:
    """LDConv's execution in a PyTorch case label (training or inference), else None."""
    parts = backend.split("-")
    if parts[0] != "pytorch":
        return None
    if "train" in parts:
        return parts[-1] if parts[-1] in EXECUTIONS else None
    return inference_execution(backend)


@functools.cache
def has_ldconv(name: str) -> bool:
    return has_dynamic_convs(build_model(name, 17))


def inference_execution(backend: str) -> str | None:
    """LDConv's execution in a ``pytorch-<dtype>-<execution>[-compile|-cudagraphs]`` inference
    label, else None."""
    for suffix in COMPILED_SUFFIXES:
        backend = backend.removesuffix(suffix)
    parts = backend.split("-")
    if parts[0] != "pytorch" or "train" in parts or len(parts) != 3:
        return None
    return parts[2]


def fastest(rows: list[dict]) -> list[dict]:
    """Per (model, batch, dtype): the measured PyTorch case with the most images/s (which
    execution, eager or compiled); training rows have the dtype "train" or "train-amp"."""
    best: dict[tuple, dict] = {}
    for row in rows:
        execution = label_execution(row["backend"])
        if execution is None or row["status"] != "measured":
            continue
        parts = row["backend"].split("-")
        dtype = "-".join(parts[1:-1]) if "train" in parts else parts[1]
        key = (row["model"], row["batch"], dtype)
        if key not in best or row["images_per_s"] > best[key]["images_per_s"]:
            best[key] = row
    return [
        {"model": model, "batch": batch, "dtype": dtype, "backend": row["backend"],
         "execution": row["execution"], "images_per_s": row["images_per_s"]}
        for (model, batch, dtype), row in best.items()
    ]  # fmt: skip


def empty_row(backend: str, model: str, batch: int, status: str) -> dict:
    """A figure that was not measured, with the keys of a measured one."""
    row = dict.fromkeys(ROW_KEYS)
    row.update(model=model, batch=batch, backend=backend, status=status)
    return row


def onnxruntime_provider(device: str) -> tuple[str | None, str]:
    """(provider, status): ONNX Runtime's provider for ``device``, or None and why not."""
    try:
        import onnxruntime
    except ImportError:
        return None, "unavailable: onnxruntime is not installed"
    wanted = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    available = onnxruntime.get_available_providers()
    if wanted not in available:
        return (
            None,
            f"unavailable: {wanted} not in {available} (onnxruntime {onnxruntime.__version__})",
        )
    return wanted, f"measured with {wanted} (onnxruntime {onnxruntime.__version__})"


# -- one case each: a callable that does one batch ------------------------------------------
def _channels_last(device: torch.device) -> bool:
    # As the engine and the inference backend do: NHWC on the CPU (oneDNN's depthwise kernels),
    # the default layout on CUDA.
    return device.type == "cpu"


def _images(batch, plan, device, dtype=torch.float32) -> torch.Tensor:
    images = torch.randn(batch, 3, *plan.input_size, device=device, dtype=dtype)
    if _channels_last(device):
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def training_step(
    name: str, batch: int, plan: Plan, device: torch.device, execution: str = "auto"
) -> Callable:
    amp = device.type == "cuda"
    model = set_ldconv_execution(build_model(name, plan.num_joints), execution)
    model = model.train().to(device)
    if _channels_last(device):
        model = to_channels_last(model)
    optimizer = adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    images = _images(batch, plan, device)
    height, width = plan.input_size
    target = torch.rand(batch, plan.num_joints, height // 4, width // 4, device=device)
    weight = torch.ones(batch, plan.num_joints, device=device)

    def step():  # ldnet train's step (ldnet.engine.step)
        apply_gradients(forward_loss(model, images, target, weight, amp), optimizer, scaler)

    return step


def inference_call(
    name: str, batch: int, dtype: str, plan: Plan, device, execution="auto", mode=None
) -> Callable:
    """One batch of eval-mode inference; ``mode``: torch.compile's mode, None for eager."""
    dtype = getattr(torch, dtype)
    model = prepare_pytorch_model(name, plan.num_joints, True, _channels_last(device), execution)
    model = model.to(device, dtype)
    if mode is not None:
        allow_recompiles()  # every case compiles a fresh model
        model = torch.compile(model, mode=mode, fullgraph=True)
    images = _images(batch, plan, device, dtype)

    def run():
        with torch.inference_mode():
            return model(images)

    return run


def onnxruntime_call(path, batch: int, plan: Plan, provider: str) -> Callable:
    """Inputs and outputs bound on the provider's device, as PyTorch's stay on the GPU."""
    import onnxruntime

    session = onnx_session(path, provider=provider)
    if session.get_providers()[0] != provider:  # ORT falls back to the CPU with a warning
        raise RuntimeError(f"{provider} did not load (session has {session.get_providers()})")
    where = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
    images = np.random.default_rng(0).standard_normal((batch, 3, *plan.input_size))
    binding = session.io_binding()
    binding.bind_ortvalue_input(
        session.get_inputs()[0].name,
        onnxruntime.OrtValue.ortvalue_from_numpy(images.astype(np.float32), where, 0),
    )
    for output in session.get_outputs():
        binding.bind_output(output.name, where)

    def run():
        session.run_with_iobinding(binding)

    return run


def _execution_of(backend: str, model: str) -> str:
    """The LDConv execution a case ran: its label's, the export's in ONNX Runtime (dynamic
    batch: "mixture"), "-" without LDConv."""
    if not has_ldconv(model):
        return "-"
    if backend.startswith("onnxruntime"):
        return "mixture"
    return label_execution(backend) or "auto"


# -- timing ---------------------------------------------------------------------------------
def _synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


@dataclass
class _Case:
    backend: str
    model: str
    batch: int
    run: Callable
    iterations: int
    peak_memory_mib: float | None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.backend, self.model, self.batch)


def _prepare(key, build: Callable[[], Callable], plan: Plan, device: torch.device) -> _Case:
    synchronize = _synchronizer(device)
    cuda = device.type == "cuda"
    if cuda:
        synchronize()
        before = torch.cuda.memory_allocated(device)
    run = build()
    for _ in range(plan.warmup):  # cuDNN autotuning and the allocator's first blocks
        run()
    peak = None
    if cuda and not key[0].startswith("onnxruntime"):  # ORT's allocator is its own
        synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        run()
        synchronize()
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return _Case(*key, run, calls_per_burst(run, plan.min_repeat_s, synchronize), peak)


def _builder(key, plan: Plan, device: torch.device, onnx_path, provider) -> Callable:
    backend, name, batch = key
    if backend.startswith("onnxruntime"):
        return lambda: onnxruntime_call(onnx_path(name), batch, plan, provider)
    execution = label_execution(backend) or "auto"
    if "train" in backend:
        return lambda: training_step(name, batch, plan, device, execution)
    dtype = backend.split("-")[1]
    return lambda: inference_call(
        name, batch, dtype, plan, device, execution, compile_mode(backend)
    )


def reference_backend(backend: str) -> str:
    """The label the reference model (no LDConv: "auto" only) has for the same case."""
    execution = label_execution(backend)
    if execution is None:
        return backend
    parts = backend.split("-")
    parts[parts.index(execution)] = "auto"
    return "-".join(parts)


def preparation_order(keys: list[tuple]) -> list[tuple]:
    """Eager cases first, then the compiled ones, "auto" before the other executions and CUDA
    graphs before the default mode (on one H200 CUDA graphs ran 1.6-6x the default mode's
    images/s): what a time budget cuts is the least needed."""

    def rank(key):
        backend = key[0]
        mode = compile_mode(backend)
        if mode is None:
            return (0, 0, 0)
        return (1, inference_execution(backend) != "auto", mode != "reduce-overhead")

    return sorted(keys, key=rank)  # stable: the report's order within each rank


def measure(
    plan: Plan, device: str | torch.device, on_case=None, on_round=None
) -> tuple[list[dict], str]:
    """Every figure of ``plan`` on ``device``: (rows with ``ROW_KEYS``, ONNX Runtime status)."""
    from ldnet.deploy.export import export_onnx

    device = torch.device(device)
    kind = device.type
    provider, onnx_status = onnxruntime_provider(kind) if plan.onnxruntime else (None, "")
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as a GPU user runs: the fastest kernel per shape
    torch.manual_seed(0)
    cases: list[_Case] = []
    rows: dict[tuple, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ldnet-gpucheck-") as folder:
            exported: dict[str, object] = {}

            def onnx_path(name):  # one export per model serves every batch (dynamic batch)
                if name not in exported:
                    model = build_model(name, plan.num_joints).eval()
                    exported[name] = export_onnx(model, f"{folder}/{name}.onnx", plan.input_size)
                return exported[name]

            started = time.perf_counter()
            for key in preparation_order(plan.cases(kind)):
                onnx = key[0].startswith("onnxruntime")
                spent = time.perf_counter() - started
                if onnx and provider is None:
                    rows[key] = empty_row(*key, onnx_status)
                elif compile_mode(key[0]) and plan.budget_s is not None and spent > plan.budget_s:
                    rows[key] = empty_row(*key, f"skipped: time budget ({plan.budget_s:.0f} s)")
                else:
                    try:
                        build = _builder(key, plan, device, onnx_path, provider)
                        cases.append(_prepare(key, build, plan, device))
                    except Exception as error:
                        why = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                        if onnx:
                            # A provider listed as available can still fail to load (a
                            # missing cuDNN or CUDA library): record why, measure the rest.
                            onnx_status = f"unavailable: {why}"
                            rows[key] = empty_row(*key, onnx_status)
                        else:  # one case that cannot run loses no other figure
                            rows[key] = empty_row(*key, f"failed: {why}")
                if on_case is not None:
                    on_case(key)
            synchronize = _synchronizer(device)
            seconds: dict[tuple, list[float]] = {case.key: [] for case in cases}
            for round_index in range(plan.repeats):
                for case in cases:
                    seconds[case.key].append(
                        seconds_per_call(case.run, case.iterations, synchronize)
                    )
                if on_round is not None:
                    on_round(round_index)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    results = []
    macs = {name: macs_per_image(name, plan.num_joints, plan.input_size) for name in plan.models}
    for case in cases:
        median_s = statistics.median(seconds[case.key])
        rate = case.batch / median_s
        result = BenchResult(
            case.model,
            case.batch,
            rate,
            median_s * 1e3,
            plan.repeats,
            case.iterations,
            case.backend,
            # Forward multiply-adds per second; a training step's backward is not counted in
            # `ldnet complexity`'s MACs, so training rows leave it empty.
            gmac_per_s=None if "train" in case.backend else macs[case.model] * rate / 1e9,
            execution=_execution_of(case.backend, case.model),
        )
        results.append((result, case.peak_memory_mib))
    # Against the reference in the same mode: its "auto" row of the same dtype and compile
    # mode (it has no LDConv, so it runs no other execution).
    rate = {(r.backend, r.model, r.batch): r.images_per_s for r, _ in results}
    for result, peak in results:
        base = rate.get((reference_backend(result.backend), REFERENCE, result.batch))
        rows[(result.backend, result.model, result.batch)] = {
            **result.to_dict(),
            "peak_memory_mib": peak,
            f"speedup_vs_{REFERENCE}": None if base is None else result.images_per_s / base,
            "status": "measured",
        }
    cases.clear()
    if kind == "cuda":
        torch.cuda.empty_cache()
    return [rows[key] for key in plan.cases(kind)], onnx_status
