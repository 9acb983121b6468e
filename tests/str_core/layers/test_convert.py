"""sparsify / densify on whole models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from str_core.config import STRConfig
from str_core.layers import (
    STR_LAYER_TYPES,
    STRConv1d,
    STRConv2d,
    STRLinear,
    densify,
    prunable_layers,
    sparsify,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.ReLU())
        self.seq = nn.Conv1d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.bn(self.stem(x)))  # (N, 4, 4, 4)
        x = self.seq(x.flatten(2))  # (N, 4, 16)
        return self.head(x.flatten(1))


def test_sparsify_converts_every_prunable_layer_and_keeps_the_function() -> None:
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(2, 1, 4, 4)
    before = model(x)
    sparsify(model, STRConfig(s_init=-1e4))
    kinds = {n: type(m) for n, m in prunable_layers(model)}
    assert kinds == {
        "stem": STRConv2d,
        "block.0": STRConv2d,
        "seq": STRConv1d,
        "head": STRLinear,
    }
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_exclude_names_and_patterns() -> None:
    model = sparsify(Net(), STRConfig(exclude=("stem",)), exclude=["block.*"])
    str_names = {n for n, m in model.named_modules() if isinstance(m, STR_LAYER_TYPES)}
    assert str_names == {"seq", "head"}
    with pytest.raises(ValueError, match="match no prunable layer"):
        sparsify(Net(), exclude=["stme"])


def test_sparsify_is_idempotent_and_keeps_training_mode() -> None:
    model = Net().eval()
    sparsify(model, STRConfig(s_init=-2.0))
    first = {n: id(m) for n, m in prunable_layers(model)}
    sparsify(model, STRConfig(s_init=-9.0))
    assert {n: id(m) for n, m in prunable_layers(model)} == first
    assert all(not m.training for m in model.modules())


def test_densify_returns_plain_layers_with_thresholded_weights() -> None:
    torch.manual_seed(0)
    model = sparsify(Net(), STRConfig(s_init=-1.0))
    x = torch.randn(2, 1, 4, 4)
    model.eval()
    expected = model(x)
    sparse_weights = {n: m.sparse_weight().detach() for n, m in prunable_layers(model)}  # type: ignore[operator]
    plain = densify(copy.deepcopy(model))
    assert not any(isinstance(m, STR_LAYER_TYPES) for m in plain.modules())
    assert not any(n.endswith(".s") for n, _ in plain.named_parameters())
    for name, layer in prunable_layers(plain):
        torch.testing.assert_close(layer.weight, sparse_weights[name], rtol=0, atol=0)
    torch.testing.assert_close(plain(x), expected)
