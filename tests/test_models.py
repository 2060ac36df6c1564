"""Presets: the official LDNet's structure and counts, HRNet-W32 is HRNet, everything trains
and folds."""

import pytest
import torch
import torch.nn.functional as F
from helpers import spread

from ldnet.models import PRESETS, build_model
from ldnet.models.blocks import BasicBlock, DWBlock, LDBlock
from ldnet.models.fuse import fuse_for_inference
from ldnet.models.ldconv import DynamicConv2d
from ldnet.models.stem import LiteStem, channel_shuffle

# Counted on the official model code (NBU-CVMI/LDNet, dysmallnet_spattention) and HRNet's.
TRUE_PARAMS = {"ldnet_w32": 30_330_210, "ldnet_w48": 68_089_394, "hrnet_w32": 28_536_113}
SMALL = (64, 64)  # shape and gradient checks at a small input (as timm caps them)


@pytest.mark.parametrize("name", list(TRUE_PARAMS))
def test_true_parameter_counts_are_the_official_ones(name):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == TRUE_PARAMS[name]


def _block_types(model):
    """Per stage, the set of block classes in its branches."""
    return [
        {
            type(block)
            for module in stage.hr_modules
            for branch in module.branches
            for block in branch
        }
        for stage in model.stages
    ]


def test_ldnet_w32_is_the_figures_block_order():
    model = build_model("ldnet_w32")
    assert _block_types(model) == [{DWBlock}, {BasicBlock}, {LDBlock}]
    assert [len(stage.hr_modules) for stage in model.stages] == [2, 4, 2]
    assert [stage.hr_modules[0].branches[-1][0].conv1[0].out_channels for stage in model.stages][
        :2
    ] == [64, 128]
    widths = [len(module.branches) for stage in model.stages for module in stage.hr_modules[:1]]
    assert widths == [2, 3, 4]
    assert all(
        len(branch) == 2 for s in model.stages for m in s.hr_modules for branch in m.branches
    )
    # Only the 1/4 output leaves stage 4, into the 1x1 head and the refinement module.
    assert model.stages[-1].out_widths == (32,)
    assert isinstance(model.stem, LiteStem)
    assert model.head.final.kernel_size == (1, 1)
    assert isinstance(model.head.krm.conv2[0], DynamicConv2d)
    assert model.head.krm.conv3[0].kernel_size == 9


def test_release_w18_order_swaps_stages_3_and_4():
    assert _block_types(build_model("ldnet_w32_ld3")) == [{DWBlock}, {LDBlock}, {BasicBlock}]
    assert PRESETS["ldnet"] is PRESETS["ldnet_w32"]
    assert PRESETS["ldnet_w48"].stages[2].widths == (48, 96, 192, 384)


def test_activations_are_where_the_official_code_has_them():
    model = build_model("ldnet_w32")
    stage3 = model.stages[1]
    # LeakyReLU(0.01): stem, DW/Basic blocks, transitions, fusion; ReLU: LD blocks, KRM.
    assert isinstance(model.stem.conv1[2], torch.nn.LeakyReLU)
    assert model.stem.conv1[2].negative_slope == 0.01
    assert isinstance(stage3.transition.layers[2][0][2], torch.nn.LeakyReLU)
    assert stage3.hr_modules[0].act == "leaky_relu"
    assert stage3.hr_modules[0].branches[0][0].act == "leaky_relu"
    assert isinstance(model.stages[2].hr_modules[0].branches[0][0].conv1[2], torch.nn.ReLU)
    assert isinstance(model.head.krm.conv1[2], torch.nn.ReLU)
    hrnet = build_model("hrnet_w32")
    assert hrnet.stages[1].hr_modules[0].act == "relu"


def test_ablations_differ_from_ldnet_by_one_switch():
    ldnet = PRESETS["ldnet_w32"]
    assert PRESETS["ldnet_w32_static"].dynamic is False
    assert PRESETS["ldnet_w32_no_krm"].head.kind == "simple"
    assert PRESETS["ldnet_w32_hrnet_stem"].stem.kind == "hrnet"
    for name in ("ldnet_w32_static", "ldnet_w32_no_krm", "ldnet_w32_hrnet_stem"):
        assert PRESETS[name].stages == ldnet.stages
    static = build_model("ldnet_w32_static")
    assert not any(isinstance(m, DynamicConv2d) for m in static.modules())


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("joints", [17, 16])
def test_forward_and_backward(name, joints):
    torch.manual_seed(0)
    model = build_model(name, joints).train()
    images = torch.randn(2, 3, *SMALL)
    (heatmaps,) = model.forward_all(images)
    assert heatmaps.shape == (2, joints, SMALL[0] // 4, SMALL[1] // 4)
    heatmaps.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_official_initialisation():
    torch.manual_seed(0)
    model = build_model("ldnet_s")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert 0.0009 < weights.std() < 0.0011  # every nn.Conv2d N(0, 0.001), attentions too
    assert all(m.bias is None or not m.bias.any() for m in convs)
    bank = model.head.krm.conv3[0].weight  # 9x9 bank: Kaiming-uniform, fan-in 17 * 81
    assert bank.abs().max() <= (6 / (17 * 81)) ** 0.5
    assert bank.std() > 0.01


def test_refinement_module_formula():
    """out1 = ReLU(BN(conv3x3(h))), s = sigmoid(ReLU(BN(dyn9x9(ReLU(BN(dyn1x1(out1))))))),
    output = out1 * (1 + sigmoid(out1) * s)."""
    torch.manual_seed(1)
    krm = spread(build_model("ldnet_s").head.krm)
    h = torch.randn(2, 17, 16, 12)
    with torch.no_grad():
        out1 = krm.conv1(h)
        assert (out1 >= 0).all()
        s = torch.sigmoid(krm.conv3(krm.conv2(out1)))
        assert torch.allclose(krm(h), out1 * (1 + torch.sigmoid(out1) * s))
        assert krm(h).sub(out1).abs().max() > 0.1  # the refinement does something


def test_channel_shuffle_interleaves_the_halves():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_lite_stem_halves():
    stem = LiteStem(32)
    x = torch.randn(1, 3, 64, 48)
    out = stem(x)
    assert out.shape == (1, 32, 16, 12)
    # Both halves are strided (half A is a stride-2 depthwise conv, not the figure's identity).
    assert stem.half_a[0][0].stride == (2, 2) and stem.half_a[0][0].groups == 16
    assert stem.half_b[1][0].stride == (2, 2) and stem.half_b[0][0].out_channels == 32
    assert stem.conv1[0].bias is not None


@pytest.mark.parametrize("name", ["ldnet_s", "ldnet_w32_static", "hrnet_w32"])
def test_batchnorm_folding_keeps_outputs(name):
    torch.manual_seed(0)
    model = spread(build_model(name))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    images = torch.randn(3, 3, 128, 96)
    with torch.no_grad():
        expected = model(images)
        scale = expected.abs().max()
        assert torch.allclose(fused(images), expected, atol=1e-4 * scale, rtol=0)
        for execution in ("aggregate", "mixture"):
            for conv in fused.modules():
                if isinstance(conv, DynamicConv2d):
                    conv.execution = execution
            assert torch.allclose(fused(images[:1]), expected[:1], atol=1e-4 * scale, rtol=0)


def test_unknown_preset_and_bad_joint_count():
    with pytest.raises(KeyError, match="unknown model 'hrnet_w48'; choose from ldnet"):
        build_model("hrnet_w48")
    with pytest.raises(ValueError, match="joint count must be positive, got 0"):
        build_model("ldnet", 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ldnet_w32", "ldnet_w32_ld3", "hrnet_w32", "ldnet_s"])
def test_onnx_export_has_a_dynamic_batch(name, tmp_path):
    import numpy as np
    import onnxruntime

    from ldnet.deploy.export import export_onnx

    torch.manual_seed(0)
    model = spread(build_model(name, 16))
    path = export_onnx(model, tmp_path / f"{name}.onnx", (128, 96))
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.onnx"]  # no temporary left
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images = torch.randn(batch, 3, 128, 96)
        (heatmaps,) = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            expected = model(images).numpy()
        assert heatmaps.shape == (batch, 16, 32, 24)
        np.testing.assert_allclose(heatmaps, expected, atol=1e-4 * np.abs(expected).max())


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


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_fusion_is_hrnets_sum_of_resampled_branches(act):
    """The module sums the upsampled branches from the lowest resolution up; that must be
    HRNet's act(sum_j path_j(x_j)), each path upsampling by 2^(j-i) on its own."""
    from ldnet.models.parallel import HighResolutionModule

    torch.manual_seed(0)
    widths = (16, 32, 64, 128)
    module = HighResolutionModule(widths, (1,) * 4, ("dw", "basic", "ld", "ld"), act).eval()
    for parameter in module.parameters():  # away from init so every path contributes
        torch.nn.init.normal_(parameter, 0, 0.2)
    xs = [torch.randn(2, w, 32 >> i, 24 >> i) for i, w in enumerate(widths)]
    activation = F.relu if act == "relu" else (lambda t: F.leaky_relu(t, 0.01))
    with torch.no_grad():
        outputs = module(xs)
        branches = [branch(x) for branch, x in zip(module.branches, xs, strict=True)]
        for i, paths in enumerate(module.fuse):
            expected = activation(sum(path(x) for path, x in zip(paths, branches, strict=True)))
            scale = expected.abs().max()
            assert scale > 1
            assert torch.allclose(outputs[i], expected, atol=1e-5 * scale, rtol=0), i
            if act == "leaky_relu":
                assert (outputs[i] < 0).any()
