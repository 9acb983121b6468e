"""Tests for str_core.metrics.accounting: the per-layer table, measured and from a budget."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn

from str_core.config import STRConfig
from str_core.layers import STRMixin, prunable_layers, sparsify
from str_core.metrics.accounting import Accounting, LayerRow, account, account_with_budget
from str_core.metrics.flops import dense_flops_by_module
from str_core.models import create_model, get_model_info


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)  # 216 weights, 8*6*6*27 MACs at 6x6
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)  # 1152, 16*9*72
        self.pool = nn.AdaptiveAvgPool2d(1)  # 16*3*3 = 144
        self.fc = nn.Linear(16, 10)  # 160

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        out: Tensor = self.fc(torch.flatten(self.pool(self.conv2(x)), 1))
        return out


SHAPE = (3, 6, 6)
NAMES = ["conv1", "conv2", "fc"]


def _net() -> _Net:
    torch.manual_seed(0)
    return _Net()


def test_dense_table_rows_and_totals() -> None:
    table = account(_net(), SHAPE)
    assert [r.name for r in table.rows] == NAMES
    conv1, conv2, fc = table.rows
    assert conv1 == LayerRow(
        name="conv1",
        kind="conv",
        shape=(8, 3, 3, 3),
        params=216,
        nonzero=216,
        sparsity=0.0,
        threshold=None,
        dense_flops=8 * 36 * 27,
        sparse_flops=8 * 36 * 27,
    )
    assert (conv2.shape, conv2.params, conv2.dense_flops) == ((16, 8, 3, 3), 1152, 16 * 9 * 72)
    assert (fc.kind, fc.shape, fc.params, fc.dense_flops) == ("linear", (10, 16), 160, 160)
    assert table.pool_flops == 144
    assert table.total_params == table.total_nonzero == 216 + 1152 + 160
    assert table.sparsity == 0.0
    assert table.dense_flops == table.sparse_flops == 7776 + 10368 + 160 + 144


def test_measured_zeros_scale_flops_and_ignore_biases() -> None:
    model = _net()
    with torch.no_grad():
        model.conv2.weight[:4].zero_()  # a quarter of conv2
        model.conv1.bias.zero_()  # type: ignore[union-attr]
    table = account(model, SHAPE)
    conv2 = table.rows[1]
    assert (conv2.nonzero, conv2.sparsity) == (864, 0.25)
    assert conv2.sparse_flops == 10368 * 3 // 4
    assert table.total_nonzero == table.total_params - 288
    assert table.sparsity == pytest.approx(288 / 1528)
    assert table.sparse_flops == table.dense_flops - 10368 // 4


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_str_model_table_matches_thresholds(granularity: str) -> None:
    model = sparsify(
        _net(),
        STRConfig(s_init=-2.0, threshold_fn="exp", granularity=granularity),  # type: ignore[arg-type]
    )
    table = account(model, SHAPE)
    dense = dense_flops_by_module(model, SHAPE)
    expected_sparse = float(dense["pool"])
    below_total = 0
    for row, (name, module) in zip(table.rows, prunable_layers(model), strict=True):
        assert isinstance(module, STRMixin)
        t = module.threshold()
        below = int((module.weight.abs() <= t).sum())  # t broadcasts per channel
        below_total += below
        assert row.name == name
        assert row.nonzero == row.params - below
        assert row.sparsity == pytest.approx(below / row.params)
        assert row.threshold == pytest.approx(math.exp(-2.0))
        expected_sparse += dense[name] * (1 - below / row.params)
    assert 0 < below_total < table.total_params  # high thresholds prune part of each model
    assert table.sparsity == pytest.approx(below_total / table.total_params)
    assert table.sparse_flops == pytest.approx(expected_sparse, abs=len(table.rows))
    assert table.dense_flops == sum(dense.values())


def test_to_dict_is_json_ready_and_budget_lists_sparsities() -> None:
    model = sparsify(_net(), STRConfig(s_init=-2.0, threshold_fn="exp"))
    table = account(model, SHAPE)
    data = json.loads(json.dumps(table.to_dict()))
    assert data["total_params"] == table.total_params
    assert data["sparse_flops"] == table.sparse_flops
    assert data["rows"][0]["shape"] == [8, 3, 3, 3]
    assert data["rows"][2]["kind"] == "linear"
    assert data["rows"][1]["threshold"] == pytest.approx(math.exp(-2.0))
    assert set(data) == {
        "rows",
        "pool_flops",
        "total_params",
        "total_nonzero",
        "sparsity",
        "dense_flops",
        "sparse_flops",
    }
    assert table.budget() == {r.name: r.sparsity for r in table.rows}
    assert list(table.budget()) == NAMES


def test_account_with_budget_uses_rounded_counts_not_weights() -> None:
    model = sparsify(_net(), STRConfig(s_init=-2.0, threshold_fn="exp"))
    budget = {"conv1": 0.5, "conv2": 0.9, "fc": 1 / 3}
    table = account_with_budget(model, SHAPE, budget)
    assert [r.nonzero for r in table.rows] == [108, round(1152 * 0.1), round(160 * 2 / 3)]
    assert [r.threshold for r in table.rows] == [None, None, None]
    assert table.rows[1].sparse_flops == round(10368 * 115 / 1152)
    assert table.total_params == 1528
    assert table.sparse_flops == sum(r.sparse_flops for r in table.rows) + 144


def test_with_budget_needs_no_model_and_matches_account_with_budget() -> None:
    model = _net()
    budget = {"conv1": 0.25, "conv2": 0.5, "fc": 0.75}
    measured = account(sparsify(model, STRConfig(s_init=-2.0, threshold_fn="exp")), SHAPE)
    assert measured.with_budget(budget) == account_with_budget(model, SHAPE, budget)
    assert measured.with_budget(budget).budget() == budget
    with pytest.raises(ValueError, match="missing"):
        measured.with_budget({"fc": 0.5})
    assert measured.with_budget({"fc": 0.5}, allow_missing=True).total_nonzero == 216 + 1152 + 80


def test_budget_from_a_table_reproduces_the_table() -> None:
    model = _net()
    with torch.no_grad():
        model.fc.weight[:, :4].zero_()
    measured = account(model, SHAPE)
    assert account_with_budget(model, SHAPE, measured.budget()) == measured


def test_account_with_budget_rejects_missing_and_unknown_layers() -> None:
    model = _net()
    with pytest.raises(ValueError, match=r"missing.*'conv2'.*'fc'"):
        account_with_budget(model, SHAPE, {"conv1": 0.5})
    with pytest.raises(ValueError, match=r"not prunable.*'bn1'.*'layer9'"):
        account_with_budget(model, SHAPE, {"bn1": 0.5, "layer9": 0.1, **dict.fromkeys(NAMES, 0)})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        account_with_budget(model, SHAPE, {"conv1": 1.5, "conv2": 0.0, "fc": 0.0})


def test_account_with_budget_allow_missing_keeps_layers_dense() -> None:
    table = account_with_budget(_net(), SHAPE, {"conv2": 1.0}, allow_missing=True)
    assert [r.sparsity for r in table.rows] == [0.0, 1.0, 0.0]
    assert table.sparse_flops == 7776 + 0 + 160 + 144


def test_model_without_prunable_layers() -> None:
    table = account(nn.Sequential(nn.AdaptiveAvgPool2d(1)), (4, 2, 2))
    assert table == Accounting(
        rows=(),
        pool_flops=16,
        total_params=0,
        total_nonzero=0,
        sparsity=0.0,
        dense_flops=16,
        sparse_flops=16,
    )


# --- facts from the STR paper (DESIGN.md section 3) ---------------------------------------------


@pytest.fixture(scope="module")
def resnet50_table() -> Accounting:
    return account(create_model("resnet50"), get_model_info("resnet50").input_shape)


def test_resnet50_dense_accounting_facts(resnet50_table: Accounting) -> None:
    table = resnet50_table
    assert table.total_params == 25_502_912
    assert table.dense_flops == 4_089_284_608
    assert table.pool_flops == 100_352
    assert table.dense_flops - table.pool_flops == 4_089_184_256
    # a random init draws a handful of exact zeros out of 25.5M (uniform float32 samples)
    assert table.total_params - table.total_nonzero < 20
    assert table.sparse_flops == pytest.approx(table.dense_flops, rel=1e-6)
    assert len(table.rows) == 54
    first, last = table.rows[0], table.rows[-1]
    assert (first.name, first.kind, first.shape) == ("conv1", "conv", (64, 3, 7, 7))
    assert (last.name, last.kind, last.shape) == ("fc", "linear", (1000, 2048))
    assert table.rows[4].name == "layer1.0.downsample.0"


def test_mobilenet_v1_dense_accounting_facts() -> None:
    model = create_model("mobilenet_v1")
    table = account(model, get_model_info("mobilenet_v1").input_shape)
    assert table.total_params == 4_209_088
    assert table.dense_flops == pytest.approx(569e6, rel=0.01)
