"""LDConv: the three executions, batch independence, input dependence, gradients."""

import pytest
import torch

from ldnet.models.ldconv import DynamicDepthwiseConv, LDConv, set_ldconv_execution


def _randomise_attention(conv: DynamicDepthwiseConv) -> None:
    # Default init makes the attention nearly uniform; spread it so that the tests would
    # notice a mix-up between samples or kernels.
    with torch.no_grad():
        conv.attention.fc1.weight.normal_(0, 1)
        conv.attention.fc2.weight.normal_(0, 1)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("other", ["mixture", "separate"])
def test_aggregate_and_mixture_executions_agree(stride, channels_last, other):
    torch.manual_seed(0)
    conv = DynamicDepthwiseConv(24, stride=stride, num_kernels=4).eval()
    _randomise_attention(conv)
    x = torch.randn(3, 24, 17, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv.execution = "aggregate"
        aggregate = conv(x)
        conv.execution = other
        mixture = conv(x)
    assert aggregate.shape == (3, 24, (17 - 1) // stride + 1, (13 - 1) // stride + 1)
    assert torch.allclose(aggregate, mixture, atol=1e-5, rtol=0)
    assert aggregate.abs().max() > 0.1


def test_matches_per_sample_reference():
    """The folded grouped convolution equals convolving each sample with its own kernel."""
    torch.manual_seed(1)
    conv = DynamicDepthwiseConv(8, num_kernels=3).eval()
    _randomise_attention(conv)
    x = torch.randn(4, 8, 9, 7)
    with torch.no_grad():
        kernels = conv.aggregated_kernels(conv.attention(x))
        expected = torch.cat(
            [
                torch.nn.functional.conv2d(x[b : b + 1], kernels[b], padding=1, groups=8)
                for b in range(4)
            ]
        )
        assert torch.allclose(conv(x), expected, atol=1e-6)


@pytest.mark.parametrize("execution", ["aggregate", "mixture", "separate"])
def test_batch_of_two_equals_each_alone(execution):
    torch.manual_seed(2)
    layer = LDConv(16, 32, execution=execution).eval()
    _randomise_attention(layer.depthwise)
    a, b = torch.randn(1, 16, 12, 10), torch.randn(1, 16, 12, 10)
    with torch.no_grad():
        together = layer(torch.cat([a, b]))
        assert torch.allclose(together[0:1], layer(a), atol=1e-6)
        assert torch.allclose(together[1:2], layer(b), atol=1e-6)


def test_different_inputs_get_different_kernels():
    torch.manual_seed(3)
    conv = DynamicDepthwiseConv(16).eval()
    _randomise_attention(conv)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        attention = conv.attention(x)
        kernels = conv.aggregated_kernels(attention)
    assert torch.allclose(attention.sum(dim=1), torch.ones(2))
    assert (attention[0] - attention[1]).abs().max() > 1e-3
    assert (kernels[0] - kernels[1]).abs().max() > 1e-3


@pytest.mark.parametrize("execution", ["aggregate", "mixture", "separate"])
def test_gradients_reach_every_kernel_and_the_attention(execution):
    torch.manual_seed(4)
    layer = LDConv(8, 8, num_kernels=4, execution=execution).train()
    x = torch.randn(2, 8, 10, 10)
    (layer(x) ** 2).mean().backward()
    conv = layer.depthwise
    per_kernel = conv.weight.grad.flatten(1).abs().sum(dim=1)
    assert per_kernel.shape == (4,)
    assert (per_kernel > 0).all()
    for linear in (conv.attention.fc1, conv.attention.fc2):
        assert linear.weight.grad.abs().sum() > 0
        assert linear.bias.grad.abs().sum() > 0


def test_set_execution_switches_every_dynamic_conv():
    from ldnet.models import build_model

    model = set_ldconv_execution(build_model("ldnet"), "mixture")
    executions = {m.execution for m in model.modules() if isinstance(m, DynamicDepthwiseConv)}
    assert executions == {"mixture"}
    with pytest.raises(ValueError, match="unknown LDConv execution 'fast'"):
        set_ldconv_execution(model, "fast")


def test_temperature_sharpens_attention():
    from ldnet.models import set_attention_temperature

    torch.manual_seed(5)
    conv = DynamicDepthwiseConv(16).eval()
    _randomise_attention(conv)
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        soft = conv.attention(x).double()
        set_attention_temperature(conv, 0.1)
        sharp = conv.attention(x).double()
    # softmax(z / T): log(softmax(z)) is z up to a constant, which softmax ignores.
    torch.testing.assert_close(sharp, torch.softmax(soft.log() / 0.1, dim=1), atol=1e-5, rtol=0)
    assert sharp.max() > soft.max()
