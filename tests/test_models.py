"""Presets: HRNet-W32 is HRNet, LDNet hits the paper's ratios, everything trains and exports."""

import pytest
import torch

from ldnet.complexity import measure
from ldnet.models import PRESETS, build_model
from ldnet.models.fuse import fuse_for_inference

HRNET_W32_OFFICIAL_PARAMS = 28_536_113


@pytest.fixture(scope="module")
def costs_256x192():
    return {name: measure(build_model(name), (256, 192)) for name in ("ldnet", "hrnet_w32")}


def test_hrnet_w32_has_the_official_parameter_count(costs_256x192):
    assert costs_256x192["hrnet_w32"].params == HRNET_W32_OFFICIAL_PARAMS
    # torch's flop counter on the official HRNet-W32 gives 7.65 GMACs (paper: 7.1).
    assert costs_256x192["hrnet_w32"].macs == 7_645_003_776


def test_ldnet_hits_the_papers_ratios(costs_256x192):
    ldnet, hrnet = costs_256x192["ldnet"], costs_256x192["hrnet_w32"]
    assert ldnet.params / hrnet.params == pytest.approx(0.179, abs=0.009)
    assert ldnet.macs / hrnet.macs == pytest.approx(0.521, abs=0.026)


def test_parts_add_up_to_the_total(costs_256x192):
    for cost in costs_256x192.values():
        names = [part.name for part in cost.parts]
        assert names[:4] == ["stem", "stage2", "stage3", "stage4"]
        assert sum(part.params for part in cost.parts) == cost.params
        assert sum(part.macs for part in cost.parts) == cost.macs
    assert costs_256x192["ldnet"].parts[-1].name == "krm"


def test_ablations_differ_from_ldnet_by_one_switch():
    ldnet = PRESETS["ldnet"]
    assert PRESETS["ldnet_static"].dynamic is False
    assert PRESETS["ldnet_no_krm"].head.kind == "simple"
    assert PRESETS["ldnet_hrnet_stem"].stem.kind == "hrnet"
    for name in ("ldnet_static", "ldnet_no_krm", "ldnet_hrnet_stem"):
        assert PRESETS[name].stages == ldnet.stages


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize(
    ("size", "joints"), [((256, 192), 17), ((384, 288), 17), ((256, 256), 16), ((256, 192), 14)]
)
def test_forward_and_backward(name, size, joints):
    torch.manual_seed(0)
    model = build_model(name, joints).train()
    images = torch.randn(2, 3, *size)
    outputs = model.forward_all(images)
    height, width = size
    for heatmaps in outputs:
        assert heatmaps.shape == (2, joints, height // 4, width // 4)
    sum(out.square().mean() for out in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_krm_returns_intermediate_and_final_heatmaps():
    model = build_model("ldnet").eval()
    images = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        outputs = model.forward_all(images)
        assert len(outputs) == 2
        assert torch.equal(model(images), outputs[-1])
        assert not torch.allclose(outputs[0], outputs[1])
    assert len(build_model("hrnet_w32").eval().forward_all(torch.randn(1, 3, 256, 192))) == 1


@pytest.mark.parametrize("name", ["ldnet", "ldnet_static", "hrnet_w32"])
def test_batchnorm_folding_keeps_outputs(name):
    torch.manual_seed(0)
    model = build_model(name)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    model.eval()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    images = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        expected = model(images)
        assert torch.allclose(fused(images), expected, atol=1e-4 * expected.abs().max())
        channels_last = fused.to(memory_format=torch.channels_last)
        got = channels_last(images.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max())


def test_unknown_preset_and_bad_joint_count():
    with pytest.raises(KeyError, match="unknown model 'hrnet_w48'; choose from ldnet"):
        build_model("hrnet_w48")
    with pytest.raises(ValueError, match="joint count must be positive, got 0"):
        build_model("ldnet", 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_onnx_export_has_a_dynamic_batch(name, tmp_path):
    import numpy as np
    import onnxruntime

    from ldnet.export import export_onnx

    torch.manual_seed(0)
    joints = 16 if name == "ldnet_static" else 17
    model = build_model(name, joints).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", (256, 192))
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.onnx"]  # no temporary left
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images = torch.randn(batch, 3, 256, 192)
        (heatmaps,) = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            expected = model(images).numpy()
        assert heatmaps.shape == (batch, joints, 64, 48)
        np.testing.assert_allclose(heatmaps, expected, atol=1e-4)


def test_fusing_keeps_the_models_dtype():
    """The folded convolutions are made on the model's device and dtype (a CUDA model stays
    on CUDA: `make gpu-check` found the fused convolutions on the CPU)."""
    model = build_model("ldnet_s").double().eval()
    fused = fuse_for_inference(model)
    dtypes = {p.dtype for p in fused.parameters()}
    assert dtypes == {torch.float64}
    with torch.no_grad():
        images = torch.randn(1, 3, 64, 64, dtype=torch.float64)
        assert torch.allclose(fused(images), model(images), atol=1e-9)


@pytest.mark.parametrize("fusion", ["hrnet", "light"])
def test_fusion_is_hrnets_sum_of_resampled_branches(fusion):
    """The module sums the upsampled branches from the lowest resolution up; that must be
    HRNet's relu(sum_j path_j(x_j)), each path upsampling by 2^(j-i) on its own."""
    from ldnet.models.parallel import HighResolutionModule

    torch.manual_seed(0)
    widths = (16, 32, 64, 128)
    module = HighResolutionModule(widths, (1,) * 4, ("basic", "ld", "ld", "ld"), fusion).eval()
    for parameter in module.parameters():  # away from init so every path contributes
        torch.nn.init.normal_(parameter, 0, 0.2)
    xs = [torch.randn(2, w, 32 >> i, 24 >> i) for i, w in enumerate(widths)]
    with torch.no_grad():
        outputs = module(xs)
        branches = [branch(x) for branch, x in zip(module.branches, xs, strict=True)]
        for i, paths in enumerate(module.fuse):
            expected = torch.relu(sum(path(x) for path, x in zip(paths, branches, strict=True)))
            scale = expected.abs().max()
            assert scale > 1
            assert torch.allclose(outputs[i], expected, atol=1e-5 * scale, rtol=0), i
