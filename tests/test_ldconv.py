"""LDConv (full dynamic convolution): executions, batch independence, input dependence,
gradients, temperature."""

import pytest
import torch
import torch.nn.functional as F
from helpers import spread

from ldnet.models.ldconv import (
    DynamicConv2d,
    KernelAttention,
    attention_width,
    set_attention_temperature,
    set_ldconv_execution,
)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel_size", [1, 3, 9])
@pytest.mark.parametrize("stride", [1, 2])
def test_aggregate_and_mixture_executions_agree(kernel_size, stride, channels_last):
    torch.manual_seed(0)
    conv = spread(DynamicConv2d(6, 10, kernel_size, stride=stride, execution="aggregate"))
    x = torch.randn(3, 6, 17, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        aggregate = conv(x)
        conv.execution = "mixture"
        mixture = conv(x)
    assert aggregate.shape == (3, 10, (17 - 1) // stride + 1, (13 - 1) // stride + 1)
    scale = aggregate.abs().max()
    assert scale > 0.1
    assert torch.allclose(aggregate, mixture, atol=1e-5 * scale, rtol=0)


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


@pytest.mark.parametrize("execution", ["aggregate", "mixture", "auto"])
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


@pytest.mark.parametrize("execution", ["aggregate", "mixture"])
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


def test_auto_runs_the_mixture_only_on_several_samples_of_a_tiny_wide_map():
    from ldnet.models.ldconv import (
        MIXTURE_MAX_PIXELS_INFERENCE,
        MIXTURE_MAX_PIXELS_TRAINING,
        MIXTURE_MIN_CHANNELS,
    )

    torch.manual_seed(0)
    wide = MIXTURE_MIN_CHANNELS
    conv = spread(DynamicConv2d(wide, 16, 3))
    assert conv.execution == "auto"
    # `ldnet_w32`'s 1/32 map (8x6) trains as a mixture and infers as aggregated kernels.
    assert MIXTURE_MAX_PIXELS_INFERENCE < 8 * 6 <= MIXTURE_MAX_PIXELS_TRAINING
    assert conv.prefers_mixture(torch.zeros(2, wide, 8, 6))  # gradients flow
    with torch.no_grad():
        assert not conv.prefers_mixture(torch.zeros(2, wide, 8, 6))
        assert conv.prefers_mixture(torch.zeros(2, wide, 4, 3))
    conv.weight.requires_grad_(False)  # frozen: no backward to speed up
    assert not conv.prefers_mixture(torch.zeros(2, wide, 8, 6))
    conv.weight.requires_grad_(True)
    assert conv.prefers_mixture(torch.zeros(2, wide, 4, 3))
    assert not conv.prefers_mixture(torch.zeros(1, wide, 4, 3))  # batch 1: a plain conv
    assert not conv.prefers_mixture(torch.zeros(2, wide, 8, 7))  # 56 pixels
    narrow = DynamicConv2d(wide // 2, 16, 3)
    assert not narrow.prefers_mixture(torch.zeros(2, wide // 2, 4, 3))
    # forward follows the rule: the mixture on the tiny wide map, the aggregate form at batch 1.
    ran = []
    original = conv._forward_mixture
    conv._forward_mixture = lambda *args: ran.append("mixture") or original(*args)
    with torch.no_grad():
        conv(torch.randn(2, wide, 4, 3))
        conv(torch.randn(1, wide, 4, 3))
    assert ran == ["mixture"]
    del conv._forward_mixture
    # Whichever it runs, it is the same function as both explicit executions.
    x = torch.randn(3, wide, 4, 3)
    with torch.no_grad():
        auto = conv(x)
        conv.execution = "aggregate"
        aggregate = conv(x)
    scale = aggregate.abs().max()
    assert scale > 0.1
    assert torch.allclose(auto, aggregate, atol=1e-5 * scale, rtol=0)
