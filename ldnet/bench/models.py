"""Forward-pass throughput of models, measured side by side.

The machines this runs on are shared and noisy, so the cases are timed in interleaved
rounds (every case once per round, several rounds) and each case reports its median: a
burst of load from elsewhere hits all cases of a round alike instead of one case only.

Backends: ``pytorch`` (eager, as deployed: BN folded, channels-last, LDConv "auto" unless
told otherwise), ``pytorch-compile`` (the same through ``torch.compile``), ``onnxruntime``
and ``openvino`` (as ``PoseEstimator`` runs a model there: fixed-batch graphs, LDConv
"aggregate") and ``onnxruntime-dynamic`` / ``openvino-dynamic``
(the ``ldnet export onnx`` file: dynamic batch, LDConv "mixture"); every runtime gets as many
threads as PyTorch uses. Each result names the LDConv forms that ran.

Each model's achieved GMAC/s (its MACs per image, as ``ldnet complexity`` counts them, times
images/s) can be set beside the machine's peak, measured in the same rounds: a large dense
3x3 convolution, the operation a CPU runs closest to its arithmetic limit.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

from ldnet.bench.timing import calls_per_burst, seconds_per_call, settled_seconds_per_call
from ldnet.errors import LDNetError
from ldnet.inference.backends import (
    BACKENDS,
    BatchSpecializedOnnxBackend,
    compile_for_inference,
    onnx_file_backend,
)
from ldnet.models import build_model
from ldnet.models.fuse import fuse_for_inference, to_channels_last
from ldnet.models.ldconv import DynamicConv2d, executions_run, set_ldconv_execution

BENCH_BACKENDS = (*BACKENDS, "onnxruntime-dynamic", "openvino-dynamic")
# The peak case: a dense 3x3 convolution large enough to run at the machine's arithmetic
# limit (256 -> 256 channels on a 64x48 map, as in HRNet's widest branch: 1.8 GMAC a call).
PEAK_MODEL, PEAK_CHANNELS, PEAK_MAP = "dense-conv3x3", 256, (64, 48)


class BenchError(LDNetError):
    """A benchmark that cannot run as asked."""


@dataclass(frozen=True)
class BenchResult:
    model: str
    batch: int
    images_per_s: float
    ms_per_batch: float
    repeats: int
    iterations_per_repeat: int
    backend: str = "pytorch"
    # Multiply-accumulates per second achieved (None where not measured).
    gmac_per_s: float | None = None
    # The LDConv forms that ran ("aggregate", "mixture", "aggregate 24 + mixture 8"); "-"
    # for a network without dynamic convolutions.
    execution: str = "-"

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_pytorch_model(
    name: str, num_joints: int, fuse: bool, channels_last: bool, execution: str = "auto"
):
    """Eval-mode model ready for timing; BN folding and NHWC as in deployment."""
    model = set_ldconv_execution(build_model(name, num_joints).eval(), execution)
    if fuse:
        model = fuse_for_inference(model)
    if channels_last:
        model = to_channels_last(model)
    return model


def prepare_onnx_backend(
    name: str,
    num_joints: int,
    input_size: tuple[int, int],
    folder,
    dynamic: bool = False,
    runtime: str = "onnxruntime",
):
    """The preset in ONNX Runtime or OpenVINO (``runtime``): as ``PoseEstimator`` runs it
    (fixed-batch graphs) or, with ``dynamic``, as the ``ldnet export onnx`` file (one
    dynamic-batch graph)."""
    model = build_model(name, num_joints).eval()
    if not dynamic:
        return BatchSpecializedOnnxBackend(model, input_size, runtime=runtime)
    from ldnet.deploy.export import export_onnx

    path = export_onnx(model, f"{folder}/{name}.onnx", input_size)
    return onnx_file_backend(path, runtime)


def has_dynamic_convs(model: torch.nn.Module) -> bool:
    return any(isinstance(module, DynamicConv2d) for module in model.modules())


def describe_executions(counts: dict[str, int]) -> str:
    """{"aggregate": 24, "mixture": 8} -> "aggregate 24 + mixture 8"; one form: its name."""
    if not counts:
        return "-"
    if len(counts) == 1:
        return next(iter(counts))
    return " + ".join(f"{form} {count}" for form, count in counts.items())


def macs_per_image(name: str, num_joints: int, input_size: tuple[int, int]) -> int:
    from ldnet.models.complexity import measure

    return measure(build_model(name, num_joints), input_size).macs


def peak_case(backend: str, folder) -> tuple[Callable[[], object], int]:
    """A dense 3x3 convolution on ``backend`` and its MACs per call."""
    height, width = PEAK_MAP
    conv = torch.nn.Conv2d(PEAK_CHANNELS, PEAK_CHANNELS, 3, padding=1).eval()
    macs = PEAK_CHANNELS * PEAK_CHANNELS * 9 * height * width
    images = torch.randn(1, PEAK_CHANNELS, height, width)
    try:
        if backend == "pytorch":
            conv = conv.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)

            def run():
                with torch.inference_mode():
                    return conv(images)

            run()
            return run, macs
        path = f"{folder}/{PEAK_MODEL}.onnx"
        with warnings.catch_warnings():  # the TorchScript exporter, as ldnet.deploy.export uses
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(conv, (images,), path, input_names=["x"], dynamo=False)
        runner = onnx_file_backend(path, backend)
        crops = images.numpy()
        runner(crops)
        return (lambda: runner(crops)), macs
    except (ImportError, RuntimeError, LDNetError) as error:  # no runtime, no kernel here
        first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise BenchError(
            f"--peak: a dense 3x3 convolution cannot run on {backend}: {first_line}"
        ) from None


def benchmark_forward(
    models: Sequence[str],
    batches: Iterable[int],
    input_size: tuple[int, int] = (256, 192),
    num_joints: int = 17,
    repeats: int = 7,
    min_repeat_s: float = 0.3,
    fuse: bool = True,
    channels_last: bool = True,
    on_round: Callable[[int], None] | None = None,
    backends: Sequence[str] = ("pytorch",),
    peak: bool = False,
    execution: str = "auto",
) -> list[BenchResult]:
    """Images/s (and GMAC/s) of each (backend, model, batch) case, median over ``repeats``
    interleaved rounds; with ``peak``, a dense 3x3 convolution per backend too (model
    ``PEAK_MODEL``, batch 1, images/s = calls/s). ``execution`` is LDConv's in PyTorch;
    exported graphs take theirs from the export (fixed batch "aggregate", dynamic "mixture")."""
    import tempfile

    unknown = [b for b in backends if b not in BENCH_BACKENDS]
    if unknown:
        raise BenchError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BENCH_BACKENDS)}")
    batches = list(batches)
    bad = [b for b in batches if b < 1]
    if bad:
        raise BenchError(f"batch size must be at least 1, got {bad[0]}")
    macs = {name: macs_per_image(name, num_joints, input_size) for name in models}
    dynamic_convs = {name: has_dynamic_convs(build_model(name, num_joints)) for name in models}
    torch.manual_seed(0)
    cases = []
    with tempfile.TemporaryDirectory(prefix="ldnet-bench-") as folder:
        # The peak first: a machine where it cannot run stops before minutes of exports.
        # (A compiled dense convolution is the same oneDNN call: its peak is PyTorch's.)
        runtimes = (b.removesuffix("-dynamic").removesuffix("-compile") for b in backends if peak)
        for backend in dict.fromkeys(runtimes):
            run, macs[PEAK_MODEL] = peak_case(backend, folder)
            cases.append((backend, PEAK_MODEL, 1, run, calls_per_burst(run, min_repeat_s), "-"))
        for backend in backends:
            for name in models:
                if backend.startswith("pytorch"):
                    model = prepare_pytorch_model(name, num_joints, fuse, channels_last, execution)
                    network = model
                    if backend == "pytorch-compile":  # compiled at the first (warm-up) call
                        network = compile_for_inference(model, torch.device("cpu"))
                else:
                    runtime = backend.removesuffix("-dynamic")
                    dynamic = backend != runtime
                    runner = prepare_onnx_backend(
                        name, num_joints, input_size, folder, dynamic, runtime
                    )
                    # What the export sets (ldnet.deploy.export.exportable_model).
                    graph_form = "mixture" if dynamic else "aggregate"
                for batch in batches:
                    images = torch.randn(batch, 3, *input_size)
                    if backend.startswith("pytorch"):
                        if channels_last:
                            images = images.contiguous(memory_format=torch.channels_last)

                        def run(network=network, images=images):
                            with torch.inference_mode():
                                return network(images)

                        with torch.inference_mode():
                            forms = describe_executions(executions_run(model, images))

                    else:
                        crops = images.numpy()

                        def run(runner=runner, crops=crops):
                            return runner(crops)

                        forms = graph_form if dynamic_convs[name] else "-"

                    # Warm-up (oneDNN and ONNX Runtime pick and cache kernels on the first
                    # calls), then choose how many calls make one timed repeat last at least
                    # `min_repeat_s`.
                    run()
                    run()
                    if not backend.startswith("pytorch") and forms == "aggregate":  # fixed batch
                        blocked = getattr(runner.session_for(batch), "blocked_convs", 0)
                        if blocked:  # ldnet.deploy.nchwc
                            forms = f"aggregate, {blocked} on blocked kernels"
                    iterations = calls_per_burst(run, min_repeat_s)
                    cases.append((backend, name, batch, run, iterations, forms))

        seconds: dict[tuple, list[float]] = {case[:3]: [] for case in cases}
        for round_index in range(repeats):
            for backend, name, batch, run, iterations, _ in cases:
                seconds[(backend, name, batch)].append(settled_seconds_per_call(run, iterations))
            if on_round is not None:
                on_round(round_index)
    results = []
    for backend, name, batch, _, iterations, forms in cases:
        median_s = statistics.median(seconds[(backend, name, batch)])
        rate = batch / median_s
        results.append(
            BenchResult(
                name,
                batch,
                rate,
                median_s * 1e3,
                repeats,
                iterations,
                backend,
                gmac_per_s=macs[name] * rate / 1e9,
                execution=forms,
            )  # fmt: skip
        )
    return results


def benchmark_training(
    models: Sequence[str],
    batch: int = 16,
    input_size: tuple[int, int] = (256, 192),
    num_joints: int = 17,
    repeats: int = 5,
    steps_per_repeat: int = 2,
    on_round: Callable[[int], None] | None = None,
) -> list[BenchResult]:
    """Training samples/s: forward (all supervised outputs), heatmap loss, backward, Adam
    step, channels-last, on random tensors (the data pipeline is `ldnet bench data`)."""
    from ldnet.engine.step import adam, apply_gradients, forward_loss

    torch.manual_seed(0)
    height, width = input_size
    images = torch.randn(batch, 3, height, width).contiguous(memory_format=torch.channels_last)
    target = torch.rand(batch, num_joints, height // 4, width // 4)
    weight = torch.ones(batch, num_joints)
    steps, forms = {}, {}
    for name in models:
        model = to_channels_last(build_model(name, num_joints).train())
        optimizer = adam(model.parameters(), lr=1e-4)

        scaler = torch.amp.GradScaler("cpu", enabled=False)  # float32, as on the CPU

        def step(model=model, optimizer=optimizer, scaler=scaler):
            apply_gradients(forward_loss(model, images, target, weight, False), optimizer, scaler)

        step()  # warm-up
        steps[name] = step
        forms[name] = describe_executions(executions_run(model, images))
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(repeats):
        for name in models:
            seconds[name].append(seconds_per_call(steps[name], steps_per_repeat))
        if on_round is not None:
            on_round(round_index)
    return [
        BenchResult(
            name,
            batch,
            batch / statistics.median(seconds[name]),
            statistics.median(seconds[name]) * 1e3,
            repeats,
            steps_per_repeat,
            backend="pytorch-train",
            execution=forms[name],
        )
        for name in models
    ]


def speedups(results: Sequence[BenchResult], reference: str) -> dict[tuple[str, int], float]:
    """images/s of each case divided by the reference model's at the same batch (and on the
    same backend). Keys: (model, batch), or (backend, model, batch) with several backends."""
    several = len({r.backend for r in results}) > 1
    base = {(r.backend, r.batch): r.images_per_s for r in results if r.model == reference}
    return {
        ((r.backend, r.model, r.batch) if several else (r.model, r.batch)): r.images_per_s
        / base[(r.backend, r.batch)]
        for r in results
        if (r.backend, r.batch) in base and r.model != PEAK_MODEL
    }


def backend_speedups(
    results: Sequence[BenchResult], reference: str = "pytorch"
) -> dict[tuple[str, str, int], float]:
    """images/s of each case divided by the same model and batch on the reference backend."""
    base = {(r.model, r.batch): r.images_per_s for r in results if r.backend == reference}
    return {
        (r.backend, r.model, r.batch): r.images_per_s / base[(r.model, r.batch)]
        for r in results
        if (r.model, r.batch) in base
    }
