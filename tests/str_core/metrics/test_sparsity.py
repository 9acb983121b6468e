"""Tests for str_core.metrics.sparsity: what is counted, and exact zeros."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from str_core.config import STRConfig
from str_core.layers import STRConv2d, STRLinear, STRMixin, prunable_layers, sparsify
from str_core.metrics.sparsity import (
    SparsityStats,
    global_sparsity,
    layer_sparsity,
    layer_stats,
    layer_weight,
    per_layer_stats,
    sparsity_stats,
)


def _small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True),  # 108 weights
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5, bias=True),  # 20 weights
    )


def _below_threshold(module: nn.Module) -> tuple[int, int]:
    """(weights with |W| <= g(s), all weights) of an STR layer, counted by hand."""
    assert isinstance(module, STRMixin)
    return int((module.weight.abs() <= module.threshold()).sum()), module.weight.numel()


def test_stats_properties_and_addition() -> None:
    a = SparsityStats(nonzero=3, total=4)
    assert a.density == 0.75
    assert a.sparsity == 0.25
    b = a + SparsityStats(nonzero=0, total=4)
    assert (b.nonzero, b.total, b.sparsity) == (3, 8, 0.625)


def test_empty_stats_are_dense_not_nan() -> None:
    empty = SparsityStats(0, 0)
    assert empty.sparsity == 0.0
    assert empty.density == 1.0


@pytest.mark.parametrize(("nonzero", "total"), [(-1, 3), (4, 3)])
def test_stats_reject_impossible_counts(nonzero: int, total: int) -> None:
    with pytest.raises(ValueError, match="nonzero"):
        SparsityStats(nonzero, total)


def test_layer_weight_of_dense_layer_is_its_detached_weight() -> None:
    layer = nn.Linear(3, 2)
    w = layer_weight(layer)
    assert torch.equal(w, layer.weight)
    assert not w.requires_grad


def test_layer_weight_of_str_layer_is_thresholded() -> None:
    torch.manual_seed(0)
    layer = STRConv2d(2, 3, 3, s_init=-2.0, threshold_fn="exp")
    w = layer_weight(layer)
    assert not w.requires_grad
    assert torch.equal(w, layer.to_dense().weight)
    t = float(layer.threshold())
    assert torch.equal(w == 0, layer.weight.abs() <= t)
    assert 0 < int((w == 0).sum()) < w.numel()


def test_layer_weight_rejects_non_prunable_modules() -> None:
    with pytest.raises(TypeError, match="BatchNorm2d"):
        layer_weight(nn.BatchNorm2d(3))


def test_exact_zeros_are_counted_and_tiny_values_are_not() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1e-30], [-0.0, 2.0]]))
    stats = layer_stats(layer)
    assert (stats.nonzero, stats.total) == (2, 4)
    assert layer_sparsity(layer) == 0.5


def test_counts_only_conv_and_linear_weights_not_bn_or_biases() -> None:
    conv, bn, linear = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 5)
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
    assert conv.bias is not None
    with torch.no_grad():
        conv.weight[0].zero_()  # 27 zeros
        conv.bias.zero_()  # biases never count
        bn.weight.zero_()  # nor do BN parameters
        linear.weight[:2].zero_()  # 8 zeros
    stats = sparsity_stats(model)
    assert stats.total == 108 + 20
    assert stats.nonzero == 108 + 20 - 27 - 8
    assert global_sparsity(model) == pytest.approx(35 / 128)
    per_layer = per_layer_stats(model)
    assert list(per_layer) == ["0", "5"]
    assert per_layer["0"] == SparsityStats(81, 108)
    assert per_layer["5"] == SparsityStats(12, 20)


def test_model_without_prunable_layers_has_zero_denominator() -> None:
    stats = sparsity_stats(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))
    assert stats == SparsityStats(0, 0)
    assert global_sparsity(nn.ReLU()) == 0.0


def test_str_model_sparsity_is_fraction_below_threshold() -> None:
    torch.manual_seed(0)
    model = sparsify(_small_model(), STRConfig(s_init=-2.0, threshold_fn="exp"))
    layers = prunable_layers(model)
    assert all(isinstance(m, STRConv2d | STRLinear) for _, m in layers)
    counts = [_below_threshold(m) for _, m in layers]
    below, total = sum(b for b, _ in counts), sum(t for _, t in counts)
    assert 0 < below < total
    assert sparsity_stats(model) == SparsityStats(total - below, total)
    assert global_sparsity(model) == pytest.approx(below / total)
