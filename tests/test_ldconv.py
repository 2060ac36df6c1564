"""LDConv (full dynamic convolution): executions, batch independence, input dependence,
gradients, temperature."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import spread

from ldnet.models.fuse import banks_to_channels_last
from ldnet.models.ldconv import (
    DynamicConv2d,
    KernelAttention,
    attention_width,
    executions_run,
    set_attention_temperature,
    set_ldconv_execution,
)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel_size", [1, 3, 9])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bank_layout", ["created", "channels-last"])
def test_every_execution_computes_the_same_function(
    kernel_size, stride, channels_last, bank_layout
):
    torch.manual_seed(0)
    conv = spread(DynamicConv2d(6, 10, kernel_size, stride=stride, execution="aggregate"))
    x = torch.randn(3, 6, 17, 13)
    with torch.no_grad():
        reference = conv(x)  # created bank order, NCHW input
        if bank_layout == "channels-last":
            banks_to_channels_last(conv)
            assert conv.bank_is_channels_last() == (kernel_size > 1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = {}
        for execution in ("aggregate", "patches", "mixture"):
            conv.execution = execution
            outputs[execution] = conv(x)
            outputs[execution + " at batch 1"] = conv(x[1:2])
    assert reference.shape == (3, 10, (17 - 1) // stride + 1, (13 - 1) // stride + 1)
    scale = reference.abs().max()
    assert scale > 0.1
    for name, out in outputs.items():
        expected = reference[1:2] if name.endswith("batch 1") else reference
        assert torch.allclose(out, expected, atol=1e-5 * scale, rtol=0), name


def test_matches_per_sample_reference():
    """The folded grouped convolution equals convolving each sample with its own mixture
    sum_k a[b, k] W_k, the attention being softmax(fc2(relu(fc1(mean(x)))) / T)."""
    torch.manual_seed(1)
    conv = spread(DynamicConv2d(5, 7, 3, num_kernels=4))
    x = torch.randn(4, 5, 9, 7)
    with torch.no_grad():
        attention = conv.attention
        hidden = F.relu(attention.fc1.weight[:, :, 0, 0] @ x.mean(dim=(2, 3)).T)
        logits = attention.fc2.weight[:, :, 0, 0] @ hidden + attention.fc2.bias[:, None]
        weights = torch.softmax(logits.T / 34.0, dim=1)
        expected = torch.cat(
            [
                F.conv2d(
                    x[b : b + 1], torch.einsum("k,koihw->oihw", weights[b], conv.weight), padding=1
                )
                for b in range(4)
            ]
        )
        assert torch.allclose(conv(x), expected, atol=1e-5)
        assert (weights.max(dim=1).values > 0.3).all()  # the spread attention is not uniform


@pytest.mark.parametrize("execution", ["aggregate", "patches", "mixture", "auto"])
def test_batch_of_three_equals_each_alone(execution):
    torch.manual_seed(2)
    conv = spread(DynamicConv2d(8, 8, 3, execution=execution))
    x = torch.randn(3, 8, 12, 10)
    with torch.no_grad():
        together = conv(x)
        for b in range(3):
            assert torch.allclose(together[b : b + 1], conv(x[b : b + 1]), atol=1e-5)


def test_different_inputs_get_different_kernels():
    torch.manual_seed(3)
    conv = spread(DynamicConv2d(16, 4, 3))
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        attention = conv.attention(x)
        kernels = conv.aggregated_kernels(attention).view(2, 4, 16, 3, 3)
    assert torch.allclose(attention.sum(dim=1), torch.ones(2))
    assert (attention[0] - attention[1]).abs().max() > 1e-3
    assert (kernels[0] - kernels[1]).abs().max() > 1e-3


@pytest.mark.parametrize("execution", ["aggregate", "patches", "mixture"])
def test_gradients_reach_every_kernel_and_the_attention(execution):
    torch.manual_seed(4)
    conv = DynamicConv2d(8, 8, 3, num_kernels=4, execution=execution).train()
    x = torch.randn(2, 8, 10, 10)
    (conv(x) ** 2).mean().backward()
    per_kernel = conv.weight.grad.flatten(1).abs().sum(dim=1)
    assert per_kernel.shape == (4,)
    assert (per_kernel > 0).all()
    assert conv.attention.fc1.weight.grad.abs().sum() > 0
    assert conv.attention.fc2.weight.grad.abs().sum() > 0
    assert conv.attention.fc2.bias.grad.abs().sum() > 0


def test_attention_shapes_follow_the_official_code():
    """Hidden width int(C/4) + 1 (K for an RGB input); fc1 without bias, fc2 with; T = 34."""
    assert attention_width(32, 4) == 9
    assert attention_width(17, 4) == 5
    assert attention_width(3, 4) == 4
    attention = KernelAttention(256, 4)
    assert attention.fc1.weight.shape == (65, 256, 1, 1) and attention.fc1.bias is None
    assert attention.fc2.weight.shape == (4, 65, 1, 1) and attention.fc2.bias.shape == (4,)
    assert attention.temperature == 34.0
    conv = DynamicConv2d(32, 64, 3)
    assert conv.weight.shape == (4, 64, 32, 3, 3) and conv.bias is None


def test_kernel_bank_starts_kaiming_uniform_per_kernel():
    torch.manual_seed(6)
    conv = DynamicConv2d(64, 64, 3)
    bound = (6 / (64 * 9)) ** 0.5  # gain sqrt(2) x sqrt(3 / fan_in)
    assert conv.weight.abs().max() <= bound
    assert conv.weight.abs().max() > 0.95 * bound
    # Independent kernels, not one kernel repeated.
    assert (conv.weight[0] - conv.weight[1]).abs().max() > 0.1 * bound


def test_set_execution_switches_every_dynamic_conv():
    from ldnet.models import build_model

    model = set_ldconv_execution(build_model("ldnet_s"), "mixture")
    executions = {m.execution for m in model.modules() if isinstance(m, DynamicConv2d)}
    assert executions == {"mixture"}
    with pytest.raises(ValueError, match="unknown LDConv execution 'fast'"):
        set_ldconv_execution(model, "fast")


def test_temperature_sharpens_attention():
    torch.manual_seed(5)
    conv = spread(DynamicConv2d(16, 16, 3))
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        soft = conv.attention(x).double()
        set_attention_temperature(conv, 1.0)
        sharp = conv.attention(x).double()
    # softmax(z / T): log(softmax(z / 34)) is z / 34 up to a constant, which softmax ignores.
    torch.testing.assert_close(sharp, torch.softmax(soft.log() * 34, dim=1), atol=1e-5, rtol=0)
    assert sharp.max() > soft.max()


def test_auto_picks_per_shape_batch_and_grad_mode():
    """Batch 1: one plain convolution. Inference: the patches on tiny maps, grouped elsewhere.
    Training: the mixture on tiny wide maps, grouped elsewhere."""
    from ldnet.models.ldconv import (
        MIXTURE_MAX_PIXELS_TRAINING,
        MIXTURE_MIN_CHANNELS,
        PATCHES_MAX_PIXELS,
    )

    torch.manual_seed(0)
    wide = MIXTURE_MIN_CHANNELS
    conv = spread(DynamicConv2d(wide, 16, 3))
    assert conv.execution == "auto"
    # `ldnet_w32` at 256x192: its 1/32 map (8x6) trains as a mixture, its 1/16 map (16x12)
    # grouped; both infer as patches; its 1/8 map (32x24) and larger run grouped.
    assert 8 * 6 <= MIXTURE_MAX_PIXELS_TRAINING < 16 * 12 <= PATCHES_MAX_PIXELS < 32 * 24
    assert conv.auto_execution(torch.zeros(2, wide, 8, 6)) == "mixture"  # gradients flow
    assert conv.auto_execution(torch.zeros(2, wide, 16, 12)) == "aggregate"
    assert conv.auto_execution(torch.zeros(1, wide, 8, 6)) == "aggregate"  # batch 1
    narrow = DynamicConv2d(wide // 2, 16, 3)
    assert narrow.auto_execution(torch.zeros(2, wide // 2, 8, 6)) == "aggregate"
    with torch.no_grad():
        assert conv.auto_execution(torch.zeros(2, wide, 8, 6)) == "patches"
        assert conv.auto_execution(torch.zeros(2, wide, 16, 12)) == "patches"
        assert narrow.auto_execution(torch.zeros(2, wide // 2, 16, 12)) == "patches"
        assert conv.auto_execution(torch.zeros(2, wide, 32, 24)) == "aggregate"
        assert conv.auto_execution(torch.zeros(1, wide, 8, 6)) == "aggregate"
        assert DynamicConv2d(17, 17, 1).auto_execution(torch.zeros(2, 17, 4, 3)) == "aggregate"
        # On CUDA (measured on one H200) inference at batch > 1 is the mixture everywhere;
        # a stand-in with the shape and device a CUDA tensor would have.
        on_cuda = SimpleNamespace(shape=(2, wide, 32, 24), device=torch.device("cuda"))
        assert conv.auto_execution(on_cuda) == "mixture"
        one = SimpleNamespace(shape=(1, wide, 32, 24), device=torch.device("cuda"))
        assert conv.auto_execution(one) == "aggregate"
    conv.weight.requires_grad_(False)  # frozen: no backward to speed up
    assert conv.auto_execution(torch.zeros(2, wide, 8, 6)) == "patches"
    conv.weight.requires_grad_(True)
    # forward runs what the rule says, and it is the same function as the explicit forms.
    ran = []
    for form in ("patches", "mixture", "aggregate"):
        original = getattr(conv, f"_forward_{form}")
        setattr(conv, f"_forward_{form}", lambda *a, f=form, o=original: ran.append(f) or o(*a))
    x = torch.randn(3, wide, 8, 6)
    with torch.no_grad():
        auto = conv(x)
        conv(x[:1])
    conv(x)
    assert ran == ["patches", "aggregate", "mixture"]
    assert executions_run(conv, x) == {"mixture": 1}
    with torch.no_grad():
        assert executions_run(conv, x) == {"patches": 1}
        conv.execution = "aggregate"
        aggregate = conv(x)
    scale = aggregate.abs().max()
    assert scale > 0.1
    assert torch.allclose(auto, aggregate, atol=1e-5 * scale, rtol=0)


def test_fused_model_mixes_channels_last_kernels_without_a_copy():
    """After fuse_for_inference the banks sit channels-last: the mixed kernel of a batch-1
    call is a channels-last view of the mixing's output, and the model's output is unchanged."""
    from ldnet.models import build_model
    from ldnet.models.fuse import fuse_for_inference

    torch.manual_seed(0)
    model = build_model("ldnet_s").eval()
    fused = fuse_for_inference(model)
    convs = [m for m in fused.modules() if isinstance(m, DynamicConv2d)]
    assert all(c.bank_is_channels_last() == (c.kernel_size > 1) for c in convs)
    conv = next(c for c in convs if c.kernel_size == 3)
    with torch.no_grad():
        kernels = conv.aggregated_kernels(torch.softmax(torch.randn(1, 4), 1))
        assert kernels.is_contiguous(memory_format=torch.channels_last)
        assert not kernels.is_contiguous()
        x = torch.randn(2, 3, 128, 96)
        expected = model(x)
        got = fused(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max(), rtol=0)
