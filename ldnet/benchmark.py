"""Forward-pass throughput of models, measured side by side.

The machines this runs on are shared and noisy, so the cases are timed in interleaved
rounds (every case once per round, several rounds) and each case reports its median: a
burst of load from elsewhere hits all cases of a round alike instead of one case only.

Backends: ``pytorch`` (eager, as deployed: BN folded, channels-last, LDConv "aggregate")
and ``onnxruntime`` (the ``ldnet export onnx`` graph: dynamic batch, LDConv "separate", run
by ONNX Runtime's CPU provider with as many threads as PyTorch uses).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

from .inference.backends import BACKENDS
from .models import build_model
from .models.fuse import fuse_for_inference


@dataclass(frozen=True)
class BenchResult:
    model: str
    batch: int
    images_per_s: float
    ms_per_batch: float
    repeats: int
    iterations_per_repeat: int
    backend: str = "pytorch"

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_pytorch_model(name: str, num_joints: int, fuse: bool, channels_last: bool):
    """Eval-mode model ready for timing; BN folding and NHWC as in deployment."""
    model = build_model(name, num_joints).eval()
    if fuse:
        model = fuse_for_inference(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _time_calls(run: Callable[[], object], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    return (time.perf_counter() - start) / iterations


def prepare_onnx_session(name: str, num_joints: int, input_size: tuple[int, int], folder):
    """An ONNX Runtime session of the preset, exported as ``ldnet export onnx`` does."""
    from .export import export_onnx
    from .inference.backends import onnx_session

    path = export_onnx(build_model(name, num_joints).eval(), f"{folder}/{name}.onnx", input_size)
    return onnx_session(path)


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
) -> list[BenchResult]:
    """Images/s of each (backend, model, batch) case, median over ``repeats`` interleaved
    rounds."""
    import tempfile

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    batches = list(batches)
    torch.manual_seed(0)
    cases = []
    with tempfile.TemporaryDirectory(prefix="ldnet-bench-") as folder:
        for backend in backends:
            for name in models:
                if backend == "pytorch":
                    model = prepare_pytorch_model(name, num_joints, fuse, channels_last)
                else:
                    session = prepare_onnx_session(name, num_joints, input_size, folder)
                for batch in batches:
                    images = torch.randn(batch, 3, *input_size)
                    if backend == "pytorch":
                        if channels_last:
                            images = images.contiguous(memory_format=torch.channels_last)

                        def run(model=model, images=images):
                            with torch.inference_mode():
                                return model(images)

                    else:
                        feed = {session.get_inputs()[0].name: images.numpy()}

                        def run(session=session, feed=feed):
                            return session.run(None, feed)

                    # Warm-up (oneDNN and ONNX Runtime pick and cache kernels on the first
                    # calls), then choose how many calls make one timed repeat last at least
                    # `min_repeat_s`.
                    run()
                    run()
                    one_call = _time_calls(run, 1)
                    iterations = max(1, round(min_repeat_s / max(one_call, 1e-6)))
                    cases.append((backend, name, batch, run, iterations))

        seconds: dict[tuple, list[float]] = {case[:3]: [] for case in cases}
        for round_index in range(repeats):
            for backend, name, batch, run, iterations in cases:
                seconds[(backend, name, batch)].append(_time_calls(run, iterations))
            if on_round is not None:
                on_round(round_index)
    results = []
    for backend, name, batch, _, iterations in cases:
        median_s = statistics.median(seconds[(backend, name, batch)])
        results.append(
            BenchResult(name, batch, batch / median_s, median_s * 1e3, repeats, iterations, backend)
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
    from .engine.loss import supervised_loss

    torch.manual_seed(0)
    height, width = input_size
    images = torch.randn(batch, 3, height, width).contiguous(memory_format=torch.channels_last)
    target = torch.rand(batch, num_joints, height // 4, width // 4)
    weight = torch.ones(batch, num_joints)
    steps = {}
    for name in models:
        model = build_model(name, num_joints).train().to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer):
            loss = supervised_loss(model(images, all_outputs=True), target, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up
        steps[name] = step
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(repeats):
        for name in models:
            seconds[name].append(_time_calls(steps[name], steps_per_repeat))
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
        if (r.backend, r.batch) in base
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
