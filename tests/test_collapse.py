"""LDConvs with a steady attention exported as the static convolutions they compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ldnet.deploy.collapse import COLLAPSE_TOLERANCE, collapse_steady_ldconvs
from ldnet.models import build_model
from ldnet.models.ldconv import DynamicConv2d


def crops(count: int = 6, size=(64, 64)) -> np.ndarray:
    """Noise around a different level per crop (pooled features, hence attentions, differ)."""
    generator = np.random.default_rng(0)
    levels = np.linspace(-2, 2, count).reshape(-1, 1, 1, 1)
    return (generator.standard_normal((count, 3, *size)) + levels).astype(np.float32)


def ldconv_count(model) -> int:
    return sum(isinstance(module, DynamicConv2d) for module in model.modules())


def test_a_steady_attention_collapses_into_static_convolutions_with_the_same_heatmaps():
    torch.manual_seed(0)
    model = build_model("ldnet_s", 17).eval()  # T = 34: the attention barely moves
    images = crops()
    collapse = collapse_steady_ldconvs(model, images)
    assert collapse is not None
    assert collapse.ldconvs == ldconv_count(model) > 0
    assert ldconv_count(collapse.model) == 0
    assert ldconv_count(model) == collapse.ldconvs  # the input is left as it was
    with torch.no_grad():
        expected = model(torch.from_numpy(images))
        got = collapse.model(torch.from_numpy(images))
    change = float((got - expected).abs().max() / expected.abs().max())
    assert change == pytest.approx(collapse.heatmap_change, rel=1e-3, abs=1e-9)
    assert change <= COLLAPSE_TOLERANCE
    assert 0 <= collapse.attention_spread < 1e-2
    assert "as static convolutions" in collapse.describe()


class MovingAttention(nn.Module):
    """Each sample's kernels weighted by how bright its input is: far from their mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = x.mean(dim=(1, 2, 3)) / (x.std() + 1e-6)
        return torch.softmax(torch.stack([level * k for k in range(4)], dim=1) * 20, dim=1)


def two_ldconvs() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(DynamicConv2d(3, 8, 3), nn.ReLU(), DynamicConv2d(8, 4, 3)).eval()


def test_an_attention_that_moves_keeps_the_ldconvs():
    model = two_ldconvs()
    for module in model.modules():
        if isinstance(module, DynamicConv2d):
            module.attention = MovingAttention()
    assert collapse_steady_ldconvs(model, crops(size=(16, 16))) is None


def test_the_kernels_are_mixed_at_the_mean_attention(monkeypatch):
    # At initialisation on noise these attentions stray 3e-3 from their mean and move the
    # output by 0.8 %, close to the tolerance: it is lifted so that only the kernels count.
    monkeypatch.setattr("ldnet.deploy.collapse.COLLAPSE_TOLERANCE", 1.0)
    model = two_ldconvs()
    images = torch.from_numpy(crops(size=(16, 16)))
    first = model[0]
    first.bias = nn.Parameter(torch.randn(8))  # as `fuse_for_inference` leaves a folded BN
    with torch.no_grad():
        mean = first.attention(images).mean(dim=0)
    collapse = collapse_steady_ldconvs(model, images.numpy())
    static = collapse.model[0]
    assert isinstance(static, nn.Conv2d) and static.stride == (1, 1)
    expected = (mean.view(-1, 1, 1, 1, 1) * first.weight).sum(dim=0)
    torch.testing.assert_close(static.weight, expected)
    torch.testing.assert_close(static.bias, first.bias)


def test_a_network_without_ldconvs_comes_back_unchanged():
    model = build_model("hrnet_w32", 17).eval()
    collapse = collapse_steady_ldconvs(model, crops(2))
    assert collapse.model is model and collapse.ldconvs == 0
    assert collapse.describe() == "no LDConvs"
