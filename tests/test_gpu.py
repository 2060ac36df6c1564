"""What only a CUDA device can check; `make gpu-check` runs these (`pytest -m gpu`).

LDConv's executions on CUDA = CPU, forward and backward; an AMP training step close
to float32; channels-last = contiguous; the compiled backend's CUDA graphs = eager; DDP over
NCCL = one process; `ldnet train --device cuda` with resume. Skipped, with the reason, on a
machine without CUDA.

Comparisons run with TF32 off: on Ampere and later, cuDNN rounds float32 convolution inputs
to a 10-bit mantissa by default (about 1e-3 relative), which would hide a 1e-4 check.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml

from ldnet.models import build_model
from ldnet.models.fuse import fuse_for_inference, to_channels_last
from ldnet.models.ldconv import EXECUTIONS, DynamicConv2d

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA device (`make gpu-check` runs these on a GPU machine)",
    ),
]


@pytest.fixture(autouse=True)
def exact_float32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def assert_close(actual, expected, tol: float, scale: float | None = None, what: str = ""):
    """max |actual - expected| <= tol x scale (default: the largest |expected|)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    if scale is None:
        scale = expected.abs().max().item()
        assert scale > 0, f"{what}: all zeros"
    error = (actual - expected).abs().max().item()
    assert error <= tol * scale, f"{what}: max |difference| {error:.3g} > {tol} x {scale:.3g}"


def assert_gradients_close(actual: dict, expected: dict, tol: float):
    # One scale for all: a gradient that is float noise around zero (a bias before a
    # BatchNorm) has no relative precision of its own.
    scale = max(g.abs().max().item() for g in expected.values())
    assert scale > 0
    for name, gradient in expected.items():
        assert_close(actual[name], gradient, tol, scale, what=f"gradient of {name}")


def gradients(module) -> dict:
    return {name: p.grad.detach().cpu() for name, p in module.named_parameters()}


# -- LDConv on CUDA = CPU ---------------------------------------------------------------------
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("execution", EXECUTIONS)
def test_ldconv_cuda_equals_cpu_forward_and_backward(execution, stride, channels_last):
    torch.manual_seed(0)
    cpu = DynamicConv2d(24, 32, 3, stride=stride, num_kernels=4, execution=execution).train()
    with torch.no_grad():  # spread the attention, so a mix-up of samples or kernels shows
        cpu.attention.fc1.weight.normal_(0, 1)
        cpu.attention.fc2.weight.normal_(0, 40)
    cuda = copy.deepcopy(cpu).cuda()
    images = torch.randn(3, 24, 17, 13)
    results = []
    for module, device in ((cpu, "cpu"), (cuda, "cuda")):
        x = images.to(device)
        if channels_last:
            to_channels_last(module)
            x = x.contiguous(memory_format=torch.channels_last)
        # A leaf of its own on each device: `images.to("cpu")` is `images` itself, and once
        # that requires grad, its CUDA copy would be a non-leaf without a .grad.
        x = x.detach().requires_grad_(True)
        out = module(x)
        torch.manual_seed(1)
        out.backward(torch.randn(out.shape).to(device))
        results.append((out, x.grad, gradients(module)))
    (out_cpu, dx_cpu, grads_cpu), (out_cuda, dx_cuda, grads_cuda) = results
    assert out_cuda.shape == (3, 32, (17 - 1) // stride + 1, (13 - 1) // stride + 1)
    assert out_cpu.abs().max() > 0.1
    assert_close(out_cuda, out_cpu, 1e-4, what="output")
    assert_close(dx_cuda, dx_cpu, 1e-4, what="input gradient")
    assert_gradients_close(grads_cuda, grads_cpu, 1e-4)


# -- mixed precision ------------------------------------------------------------------------
def heatmap_batch(batch: int, num_joints: int = 17, size=(64, 48), sigma: float = 2.0):
    """Gaussian targets at random places (mostly zeros, as real targets are), so the loss
    measures the prediction rather than a dense random target."""
    generator = torch.Generator().manual_seed(0)
    height, width = size
    cy = torch.randint(0, height, (batch, num_joints, 1, 1), generator=generator)
    cx = torch.randint(0, width, (batch, num_joints, 1, 1), generator=generator)
    ys, xs = torch.arange(height).view(1, 1, -1, 1), torch.arange(width).view(1, 1, 1, -1)
    target = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
    images = torch.randn(batch, 3, height * 4, width * 4, generator=generator)
    return images.cuda(), target.float().cuda(), torch.ones(batch, num_joints).cuda()


@pytest.mark.parametrize("name", ["ldnet", "hrnet_w32"])
def test_amp_training_step_is_finite_and_close_to_float32(name):
    """One step as the engine takes it (autocast, GradScaler, Adam): the loss within 1 % of
    float32's, the unscaled gradient's norm within 5 % and its direction within cosine 0.95,
    every weight finite after the step.

    The gradient bounds are loose on purpose: at random initialisation a deep network with
    BatchNorm in training mode amplifies rounding about a hundredfold (on the CPU, float16
    autocast with a GradScaler gave cosine 0.9987 for `ldnet`, bfloat16 0.978 for
    `hrnet_w32`, norms within 1e-4); a gradient left scaled, or not flowing, fails them."""
    from ldnet.engine.loss import supervised_loss

    torch.manual_seed(0)
    reference = build_model(name).train().cuda()
    model = copy.deepcopy(reference)
    images, target, weight = heatmap_batch(8)
    loss32 = supervised_loss(reference(images, all_outputs=True), target, weight)
    loss32.backward()
    grads32 = torch.cat([g.flatten() for g in gradients(reference).values()]).double()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda")
    # The scaler starts at 2**16 and halves it on overflow, skipping that step (as in
    # training); retry until a step is taken.
    for _ in range(20):
        with torch.autocast("cuda"):
            outputs = model(images, all_outputs=True)
        loss16 = supervised_loss(outputs, target, weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss16).backward()
        scaler.unscale_(optimizer)
        finite = all(torch.isfinite(p.grad).all() for p in model.parameters())
        if finite:
            grads16 = torch.cat([g.flatten() for g in gradients(model).values()]).double()
        scaler.step(optimizer)
        scaler.update()
        if finite:
            break
    else:
        pytest.fail("every AMP step overflowed")
    assert outputs[-1].dtype == torch.float16  # autocast did run the network in half
    assert math.isfinite(loss16.item())
    assert loss16.item() == pytest.approx(loss32.item(), rel=1e-2)
    assert grads16.norm().item() == pytest.approx(grads32.norm().item(), rel=0.05)
    assert torch.nn.functional.cosine_similarity(grads16, grads32, dim=0).item() >= 0.95
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with torch.no_grad(), torch.autocast("cuda"):
        after = supervised_loss(model(images, all_outputs=True), target, weight)
    assert math.isfinite(after.item())


# -- memory layout --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ldnet", "hrnet_w32"])
def test_channels_last_gives_the_same_outputs(name):
    """Deployed form (eval, BatchNorm folded) to 1e-4 of the largest output; training mode
    (batch statistics, LDConv's channels-last folding) to 1e-4 forward in float32, and the
    gradients in float64 to 1e-9 of the largest. Not float32 gradients: at the official
    N(0, 0.001) initialisation BatchNorm in training mode amplifies float32 rounding so much
    that each layout's first-layer gradient is 3e-3 (NCHW) to 1.3e-2 (channels-last) of the
    largest away from float64 (2-core AMD EPYC; 3.6e-3 apart on one H200), while in float64
    the two layouts agree to 1e-13."""
    torch.manual_seed(0)
    model = build_model(name).cuda()
    images = torch.randn(4, 3, 256, 192, device="cuda")
    nhwc_images = images.contiguous(memory_format=torch.channels_last)

    fused = fuse_for_inference(model.eval())
    fused_nhwc = to_channels_last(copy.deepcopy(fused))
    with torch.no_grad():
        expected, actual = fused(images), fused_nhwc(nhwc_images)
    assert_close(actual, expected, 1e-4, what="eval output")

    model.train()
    nhwc = to_channels_last(copy.deepcopy(model))
    with torch.no_grad():
        expected, actual = model(images, all_outputs=True), nhwc(nhwc_images, all_outputs=True)
    for index, (a, b) in enumerate(zip(actual, expected, strict=True)):
        assert_close(a, b, 1e-4, what=f"training output {index}")

    model, nhwc = model.double(), nhwc.double()
    grads = []
    for network, x in ((model, images.double()), (nhwc, nhwc_images.double())):
        outputs = network(x, all_outputs=True)
        sum(o.square().mean() for o in outputs).backward()
        grads.append(gradients(network))
    assert_gradients_close(grads[1], grads[0], 1e-9)


# -- the compiled backend: CUDA graphs -------------------------------------------------------
def test_compiled_backend_replays_cuda_graphs_equal_to_eager():
    """`--backend pytorch-compile` on CUDA (mode "reduce-overhead"): 5 crops as 4 + 1, twice
    (the second call replays the recorded graphs), equal to eager CUDA to 1e-4 of scale."""
    import numpy as np

    from ldnet.inference.backends import CompiledTorchBackend, TorchBackend

    torch.manual_seed(0)
    model = build_model("ldnet_s").eval()
    eager = TorchBackend(copy.deepcopy(model), "cuda")
    compiled = CompiledTorchBackend(model, "cuda")
    rng = np.random.default_rng(0)
    for _ in range(2):
        crops = rng.standard_normal((5, 3, 64, 64)).astype(np.float32)
        expected, actual = eager(crops), compiled(crops)
        scale = np.abs(expected).max()
        assert scale > 0 and np.abs(actual - expected).max() <= 1e-4 * scale


# -- DDP over NCCL = one process --------------------------------------------------------------
def _ddp_gradients(rank: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.cuda.set_device(rank)
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=2)
    images, target = (t.cuda(rank) for t in _ddp_batch())
    torch.manual_seed(1)
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build_model("ldnet")).cuda(rank)
    model = DistributedDataParallel(model, device_ids=[rank])
    half = [rank, rank + 2]  # rank r gets samples r and r + 2, as DistributedSampler would
    ((model(images[half]) - target[half]) ** 2).mean().backward()
    if rank == 0:
        torch.save(gradients(model.module), out_file)
    dist.destroy_process_group()


def _ddp_batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 64, 64, generator=generator, dtype=torch.float64)
    target = torch.rand(4, 17, 16, 16, generator=generator, dtype=torch.float64)
    return images, target


@pytest.mark.skipif(
    0 < torch.cuda.device_count() < 2,
    reason=f"DDP over NCCL needs 2 CUDA devices, found {torch.cuda.device_count()}: recent "
    "NCCL refuses two ranks on one device (the CPU/gloo DDP check is in test_engine.py)",
)
def test_ddp_two_processes_over_nccl_equal_one_process(tmp_path):
    """Gradients of 2 ranks x 2 samples (SyncBatchNorm, NCCL) = 1 process x 4 samples, in
    float64 to 1e-6 of the largest gradient (float32 rounding would exceed it)."""
    import torch.multiprocessing as mp

    out_file = tmp_path / "ddp.pt"
    mp.spawn(_ddp_gradients, args=(str(tmp_path / "init"), str(out_file)), nprocs=2)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        images, target = (t.cuda() for t in _ddp_batch())
        torch.manual_seed(1)
        model = build_model("ldnet").cuda()
        ((model(images) - target) ** 2).mean().backward()
    finally:
        torch.set_default_dtype(default)
    assert_gradients_close(torch.load(out_file, weights_only=True), gradients(model), 1e-6)


# -- `ldnet train --device cuda`, then resume -------------------------------------------------
def test_train_on_cuda_runs_and_resumes(tmp_path):
    from ldnet.checkpoint import load_checkpoint
    from ldnet.synthetic import generate_dataset

    paths = generate_dataset(tmp_path / "data", 12, 3, seed=0)
    config = tmp_path / "gpu.yaml"
    values = {
        "name": "gpu",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "ldnet"},
        "data": {
            "dataset": "coco",
            "root": str(paths.root),
            "input_size": [128, 96],
            "workers": 0,
        },
        "train": {"epochs": 1, "batch_size": 4, "max_iters_per_epoch": 3, "log_every": 1},
        "test": {"batch_size": 8, "use_gt_boxes": True},
    }
    config.write_text(yaml.safe_dump(values))
    run_dir = tmp_path / "run"

    def train(*overrides):
        command = [sys.executable, "-m", "ldnet.cli", "train", str(config), *overrides]
        command += ["--device", "cuda", "--run-dir", str(run_dir), "--quiet"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    first = train()
    assert first.returncode == 0, first.stderr[-2000:]
    state = load_checkpoint(run_dir / "last.pt")
    assert (state["epoch"], state["iteration"]) == (1, 3)
    assert "scale" in state["scaler"]  # the GradScaler was on: AMP ran (CUDA only)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["AP"])  # validated on CUDA at the end of the run

    second = train("train.epochs=2")
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resumed from {run_dir / 'last.pt'} after epoch 1" in second.stdout
    state = load_checkpoint(run_dir / "last.pt")
    assert (state["epoch"], state["iteration"]) == (2, 6)
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )
