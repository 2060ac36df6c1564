"""Run the network on a batch of crops: PyTorch eager or ONNX Runtime.

Both take float32 crops (N, 3, H, W), ImageNet-normalised RGB, and return float32 heatmaps
(N, J, H/4, W/4) as numpy arrays; everything around the network is shared.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from ldnet.models.fuse import fuse_for_inference

BACKENDS = ("pytorch", "onnxruntime")


class TorchBackend:
    """Eval mode, BatchNorm folded, channels-last: the fastest eager form on CPU."""

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu"):
        self.device = torch.device(device)
        self.model = fuse_for_inference(model).to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        if self.device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images).float().cpu().numpy()


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Same thread count as PyTorch unless told otherwise, so the two compare like for like.
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend:
    """An exported file (``ldnet export onnx``) run by ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        self.session = onnx_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def from_model(
        cls, model: torch.nn.Module, input_size: tuple[int, int], threads: int | None = None
    ) -> OnnxRuntimeBackend:
        """Export ``model`` to a temporary file and load it (the session keeps the graph)."""
        from ldnet.export import export_onnx

        with tempfile.TemporaryDirectory(prefix="ldnet-onnx-") as folder:
            path = export_onnx(model, Path(folder) / "model.onnx", input_size)
            return cls(path, threads)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(crops, dtype=np.float32)
        return self.session.run(None, {self.input_name: images})[0]


def make_backend(model: torch.nn.Module, backend: str, input_size, *, device="cpu", threads=None):
    """A network as the named backend: ``pytorch`` (eager) or ``onnxruntime`` (exported to a
    temporary file first)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        return OnnxRuntimeBackend.from_model(model, input_size, threads)
    return TorchBackend(model, device)
