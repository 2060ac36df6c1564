"""Run the network on a batch of crops: PyTorch (eager or compiled), ONNX Runtime or OpenVINO.

All take float32 crops (N, 3, H, W), ImageNet-normalised RGB, and return float32 heatmaps
(N, J, H/4, W/4) as numpy arrays; everything around the network is shared.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

from ldnet.errors import LDNetError, MissingExtra, require_extra
from ldnet.models.fuse import fuse_for_inference, to_channels_last

BACKENDS = ("pytorch", "pytorch-compile", "onnxruntime", "openvino")
# ONNX Runtime and OpenVINO are optional (the `deploy` and `openvino` extras); the versions
# they were measured and tested with are bounded in pyproject.toml.
BackendUnavailable = MissingExtra  # a backend whose runtime is not installed


class TorchBackend:
    """Eval mode, BatchNorm folded, channels-last: the fastest eager form on CPU."""

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu"):
        self.device = torch.device(device)
        self.model = fuse_for_inference(model).to(self.device)
        if self.device.type == "cpu":
            self.model = to_channels_last(self.model)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self._run(self.model, crops)

    def _run(self, network, crops: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        if self.device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        return network(images).float().cpu().numpy()


class CompileFailed(LDNetError):
    """torch.compile could not build the network here (no C++ compiler, an unsupported op)."""


def compile_for_inference(model: torch.nn.Module, device: torch.device):
    """``torch.compile`` as the backends use it: CUDA graphs on CUDA (mode "reduce-overhead":
    one launch replays the whole network), Inductor's default elsewhere; one graph per input
    shape (no dynamic shapes: LDConv's grouped form has the batch in its groups)."""
    allow_recompiles()
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(model, mode=mode, dynamic=False)


def allow_recompiles() -> None:
    """Room in dynamo's caches for many compiled shapes and models: every batch size is a
    shape of its own, and every model compiled runs through the same code objects (the
    network's and LDConv's forward); past the limit dynamo would silently run eagerly."""
    import torch._dynamo

    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, 256)
    config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 4096)


def power_of_two_chunks(count: int, largest: int) -> list[int]:
    """Batch sizes that add up to ``count``, largest first: as many ``largest`` as fit, then
    the powers of two in the rest's binary form (5 = 4 + 1)."""
    sizes = [largest] * (count // largest)
    rest = count % largest
    return sizes + [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]


class CompiledTorchBackend(TorchBackend):
    """``TorchBackend`` through ``torch.compile``, crops in power-of-two chunks (so at most
    log2(largest) + 1 shapes are ever compiled, each the first time it is seen: 20-90 s
    apiece on 2 CPU cores, less on a GPU machine). Measured: on the CPU 1.36x `ldnet_w32`'s
    eager images/s at batch 1 and 1.15x at batch 8 (`hrnet_w32` unchanged); on one H200
    as CUDA graphs about 10x eager at batch 1 (docs/measurements.md, docs/gpu.md)."""

    name = "pytorch-compile"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", largest: int = 16):
        super().__init__(model, device)
        self.largest = largest
        self.compiled = compile_for_inference(self.model, self.device)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        try:
            return run_in_chunks(crops, self.largest, lambda chunk: self._run(self.compiled, chunk))
        except torch._dynamo.exc.TorchDynamoException as error:
            first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise CompileFailed(
                f"backend pytorch-compile: torch.compile failed here ({first_line[:200]}); "
                "use --backend pytorch"
            ) from None


def run_in_chunks(crops: np.ndarray, largest: int, run) -> np.ndarray:
    """``run`` on ``crops`` in ``power_of_two_chunks``, outputs joined in order."""
    outputs, start = [], 0
    for size in power_of_two_chunks(len(crops), largest):
        outputs.append(run(crops[start : start + size]))
        start += size
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


def onnx_session(
    path: str | Path,
    threads: int | None = None,
    profile_prefix: str | None = None,
    spinning: bool = True,
    provider: str = "CPUExecutionProvider",
    optimized_path: str | Path | None = None,
    blocked: bool = True,
):
    """An ONNX Runtime session as every `ldnet` command opens one (on the CPU unless
    ``provider`` says otherwise); with ``profile_prefix`` ONNX Runtime's own profiler records
    every operator, with ``optimized_path`` the graph it optimized is saved there
    (``tools/profile_onnx.py``). On the CPU, a fixed-batch LDNet graph runs its
    per-sample convolutions on the blocked kernels where they check out, unless ``blocked``
    is False (``ldnet.deploy.nchwc``); ``session.blocked_convs`` says how many."""
    require_extra("deploy", "running an ONNX file")
    import onnxruntime

    from ldnet.deploy.nchwc import blocked_graph

    def open_session(source, optimized_to=None, optimize=True, final=True):
        options = onnxruntime.SessionOptions()
        if profile_prefix and final:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        if optimized_to or (optimized_path and final):
            options.optimized_model_filepath = str(optimized_to or optimized_path)
        if optimized_to:  # an intermediate step: its note that the graph fits this CPU only
            options.log_severity_level = 3
        # Same thread count as PyTorch unless told otherwise, so the two compare like for like.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = (
            onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            if optimize
            else onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        # Worker threads spin while waiting for the next operator (ONNX Runtime's default):
        # with spinning off they sleep between operators, and the wake-ups cost a network of
        # many small operators most (2-core Intel Xeon, 2 threads, 256x192, batch 1:
        # `ldnet_w32` 44.5 -> 37.2 ms with spinning, `hrnet_w32` 63.4 -> 55.1 ms).
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        return onnxruntime.InferenceSession(
            source if isinstance(source, bytes) else str(source), options, providers=[provider]
        )

    rewritten = None
    if blocked and provider == "CPUExecutionProvider":
        rewritten = blocked_graph(
            path,
            lambda source, optimized_to=None, optimize=True: open_session(
                source, optimized_to, optimize, final=not optimized_to
            ),
            lambda source: open_session(source, final=False),
        )
    session, count = rewritten or (open_session(path), 0)
    session.blocked_convs = count
    return session


class OnnxRuntimeBackend:
    """An exported file (``ldnet export onnx``, dynamic batch) run by ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        self.session = onnx_session(path, threads)
        self.blocked_convs = self.session.blocked_convs
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def from_model(
        cls, model: torch.nn.Module, input_size: tuple[int, int], threads: int | None = None
    ) -> BatchSpecializedOnnxBackend:
        """``model`` in ONNX Runtime, in its fastest form: fixed-batch graphs made on demand."""
        return BatchSpecializedOnnxBackend(model, input_size, threads)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(crops, dtype=np.float32)
        return self.session.run(None, {self.input_name: images})[0]


class OpenVinoBackend:
    """An ONNX file compiled by OpenVINO for the CPU (fixed or dynamic batch).

    Float32 throughout (``INFERENCE_PRECISION_HINT``: on CPUs with bfloat16 or AMX OpenVINO
    would otherwise run bfloat16 and change the heatmaps), latency hint, same thread count
    as PyTorch unless told otherwise."""

    name = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None):
        require_extra("openvino", "the openvino backend")
        import openvino

        config = {
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = openvino.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.outputs[0]

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(crops, dtype=np.float32)
        # A copy: the request reuses its output buffer on the next call.
        return np.array(self.request.infer({0: images})[self.output], dtype=np.float32)


RUNTIMES = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}


class BatchSpecializedOnnxBackend:
    """A network in ONNX Runtime (or OpenVINO: ``runtime``) as fixed-batch graphs, one per
    power-of-two batch size.

    A fixed batch lets LDConv mix each sample's kernel inside the graph and run one
    convolution per sample (the "aggregate" execution), which a dynamic-batch graph cannot
    express. A batch of N crops runs as chunks of the powers of two
    in N's binary form (up to ``largest``; 5 = 4 + 1): at most log2(largest) + 1 graphs are
    ever exported, each the first time it is needed, and no crop is padded.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        input_size: tuple[int, int],
        threads: int | None = None,
        largest: int = 16,
        runtime: str = "onnxruntime",
    ):
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        # Refused now, not at the first batch: the graphs are exported with onnx.
        if runtime == "openvino":
            require_extra("openvino", "the openvino backend")
        require_extra("deploy", f"the {runtime} backend")
        self.name = runtime
        self.runtime = RUNTIMES[runtime]
        # A copy: each export folds BatchNorm afresh, and later changes to ``model`` (further
        # training) must not leak into graphs exported after them.
        self.model = copy.deepcopy(model).eval()
        self.input_size = tuple(input_size)
        self.threads = threads
        self.largest = largest
        self.sessions: dict[int, OnnxRuntimeBackend | OpenVinoBackend] = {}

    def chunk_sizes(self, count: int) -> list[int]:
        """Batch sizes that add up to ``count``, largest first."""
        return power_of_two_chunks(count, self.largest)

    def session_for(self, batch: int) -> OnnxRuntimeBackend | OpenVinoBackend:
        if batch not in self.sessions:
            with tempfile.TemporaryDirectory(prefix="ldnet-onnx-") as folder:
                path = export_fixed_batch(self.model, batch, self.input_size, folder)
                self.sessions[batch] = self.runtime(path, self.threads)
        return self.sessions[batch]

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return run_in_chunks(crops, self.largest, lambda chunk: self.session_for(len(chunk))(chunk))


def export_fixed_batch(model: torch.nn.Module, batch: int, input_size, folder: str | Path) -> Path:
    """``model`` as an ONNX graph for exactly ``batch`` crops, written into ``folder``."""
    from ldnet.deploy.export import export_onnx

    return export_onnx(model, Path(folder) / f"model-batch{batch}.onnx", input_size, batch=batch)


def make_backend(model: torch.nn.Module, backend: str, input_size, *, device="cpu", threads=None):
    """A network as the named backend: ``pytorch`` (eager), ``pytorch-compile``
    (``torch.compile``), ``onnxruntime`` or ``openvino`` (fixed-batch graphs exported on
    demand)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "pytorch":
        return TorchBackend(model, device)
    if backend == "pytorch-compile":
        return CompiledTorchBackend(model, device)
    return BatchSpecializedOnnxBackend(model, input_size, threads, runtime=backend)


def onnx_file_backend(path: str | Path, backend: str, threads: int | None = None):
    """An exported ``.onnx`` file in ONNX Runtime (``pytorch`` and ``pytorch-compile`` mean
    the default runtime here: a file has no PyTorch form) or OpenVINO."""
    if backend == "openvino":
        return OpenVinoBackend(path, threads)
    return OnnxRuntimeBackend(path, threads)
