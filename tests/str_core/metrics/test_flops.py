"""Tests for str_core.metrics.flops: formulas, registry, hooks, and the paper's FLOP facts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from str_core.config import STRConfig
from str_core.layers import (
    STRConv1d,
    STRConv2d,
    STRLinear,
    STRMixin,
    prunable_layers,
    sparsify,
)
from str_core.metrics.flops import (
    FLOP_FORMULAS,
    avg_pool_flops,
    conv_flops,
    dense_flops,
    dense_flops_by_module,
    get_flop_formula,
    linear_flops,
    register_flops,
    scale_flops,
    sparse_flops,
)
from str_core.models import create_model, get_model_info


@pytest.mark.parametrize(
    ("layer", "input_shape", "expected"),
    [
        # out 8x16x16 = 2048 elements, each 3 * 3x3 MACs
        (nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 32, 32), 2048 * 3 * 9),
        # depthwise: one input channel per output
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 16, 16), 8 * 16 * 16 * 9),
        # groups=2: 4 of 8 input channels per output; dilation 2 shrinks 10x10 to 6x6
        (nn.Conv2d(8, 6, 3, dilation=2, groups=2), (8, 10, 10), 6 * 36 * 4 * 9),
        # non-square kernel and stride
        (nn.Conv2d(2, 3, (1, 5), stride=(2, 1)), (2, 8, 9), 3 * 4 * 5 * 2 * 5),
        # 1d: length (40 - 5) // 2 + 1 = 18
        (nn.Conv1d(2, 4, 5, stride=2), (2, 40), 4 * 18 * 2 * 5),
        (nn.Linear(6, 5), (6,), 30),
        (nn.Linear(6, 5), (7, 6), 7 * 30),  # leading dims multiply
        (nn.Linear(6, 5), (2, 3, 6), 6 * 30),
        (nn.AdaptiveAvgPool2d(1), (16, 7, 7), 16 * 49),
        (nn.AdaptiveAvgPool1d(2), (4, 10), 40),
        (nn.AvgPool2d(2), (3, 8, 8), 3 * 64),
        (nn.AvgPool1d(2), (3, 8), 24),
    ],
)
def test_dense_formulas_on_single_layers(
    layer: nn.Module, input_shape: tuple[int, ...], expected: int
) -> None:
    assert dense_flops_by_module(layer, input_shape) == {"": expected}
    assert dense_flops(layer, input_shape) == expected


def test_registered_formulas_and_mro_lookup() -> None:
    assert get_flop_formula(nn.Conv2d) is conv_flops
    assert get_flop_formula(nn.Conv1d(1, 1, 1)) is conv_flops
    assert get_flop_formula(nn.Linear) is linear_flops
    assert get_flop_formula(nn.AdaptiveAvgPool2d) is avg_pool_flops
    # STR layers are subclasses and are not registered themselves
    for cls in (STRConv1d, STRConv2d, STRLinear):
        assert cls not in FLOP_FORMULAS
    assert get_flop_formula(STRConv2d) is conv_flops
    assert get_flop_formula(STRConv1d) is conv_flops
    assert get_flop_formula(STRLinear) is linear_flops
    for other in (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Sequential):
        assert get_flop_formula(other) is None


class _Probe(nn.Module):
    """A module type registered only inside a test; records the state its formula sees."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 2


@pytest.fixture
def probe_formula() -> Iterator[list[tuple[bool, bool, torch.Size, torch.Size]]]:
    seen: list[tuple[bool, bool, torch.Size, torch.Size]] = []

    @register_flops(_Probe)
    def probe_flops(module: nn.Module, input_shape: torch.Size, output_shape: torch.Size) -> int:
        seen.append((module.training, torch.is_grad_enabled(), input_shape, output_shape))
        return 7

    try:
        yield seen
    finally:
        del FLOP_FORMULAS[_Probe]


def test_duplicate_registration_raises() -> None:
    def formula(module: nn.Module, input_shape: torch.Size, output_shape: torch.Size) -> int:
        return 0

    with pytest.raises(ValueError, match="Conv2d"):
        register_flops(nn.Conv2d)(formula)
    with pytest.raises(ValueError, match="Linear"):
        register_flops(_Probe, nn.Linear)(formula)
    assert _Probe not in FLOP_FORMULAS  # nothing half-registered
    assert FLOP_FORMULAS[nn.Conv2d] is conv_flops
    with pytest.raises(ValueError, match="at least one"):
        register_flops()


def test_custom_registration_hook_state_and_modes_restored(
    probe_formula: list[tuple[bool, bool, torch.Size, torch.Size]],
) -> None:
    bn = nn.BatchNorm1d(4)
    model = nn.Sequential(nn.Linear(3, 4), bn, _Probe(), _Probe())
    model.train()
    model[3].eval()  # a mixed state must come back exactly
    assert isinstance(bn.running_mean, Tensor)
    running_mean = bn.running_mean.clone()
    counts = dense_flops_by_module(model, (3,))
    assert counts == {"0": 12, "2": 7, "3": 7}
    # a batch-1 shape, in eval mode, without autograd
    assert probe_formula == [(False, False, torch.Size([1, 4]), torch.Size([1, 4]))] * 2
    assert [m.training for m in model] == [True, True, True, False]
    assert torch.equal(bn.running_mean, running_mean)


def test_module_called_twice_counts_twice_and_unused_module_not_at_all() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.unused = nn.Linear(4, 100)

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = self.fc(self.fc(x))
            return out

    assert dense_flops_by_module(Twice(), (4,)) == {"fc": 32}


def test_modes_restored_when_forward_fails() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)).train()
    with pytest.raises(RuntimeError):
        dense_flops_by_module(model, (3,))
    assert all(m.training for m in model.modules())
    assert not model[0]._forward_hooks  # hooks removed


class _SmallConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 12, 1)
        self.grouped = nn.Conv2d(12, 6, (3, 1), groups=3)
        self.conv1d = nn.Conv1d(6, 4, 3, stride=2)
        self.tokens = nn.Linear(4, 10)  # applied to (B, L, 4): leading dims
        self.fc = nn.Linear(10, 3)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 3, 16, 16)
        x = torch.relu(self.grouped(self.pw(self.dw(self.conv1(x)))))  # (B, 6, 6, 8)
        x = self.conv1d(x.flatten(2))  # (B, 4, 23)
        x = self.tokens(x.transpose(1, 2))  # (B, 23, 10)
        out: Tensor = self.fc(x.mean(1))  # (B, 3)
        return out


def test_dense_macs_times_two_match_torch_flop_counter() -> None:
    model = _SmallConvNet()
    counts = dense_flops_by_module(model, (3, 16, 16))
    assert list(counts) == ["conv1", "dw", "pw", "grouped", "conv1d", "tokens", "fc"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 16, 16))
    assert 2 * sum(counts.values()) == counter.get_total_flops()
    per_module = counter.get_flop_counts()
    for name, macs in counts.items():
        assert 2 * macs == sum(per_module[f"_SmallConvNet.{name}"].values()), name


def test_sparse_flops_scale_each_layer_by_density() -> None:
    torch.manual_seed(0)
    conv_layer, fc_layer = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4, 6)
    model = nn.Sequential(conv_layer, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc_layer)
    with torch.no_grad():
        conv_layer.weight[:1].zero_()  # density 3/4
        fc_layer.weight[:, :1].zero_()  # 6 of 24 zero
        fc_layer.weight[0, 1] = 0.0  # density 17/24
    conv, pool, fc = 4 * 25 * 2 * 9, 4 * 25, 24
    assert dense_flops(model, (2, 5, 5)) == conv + pool + fc
    expected = conv * 3 // 4 + pool + round(fc * 17 / 24)
    assert sparse_flops(model, (2, 5, 5)) == expected


def test_sparse_flops_of_str_model_use_thresholded_weights() -> None:
    torch.manual_seed(0)
    model = sparsify(_SmallConvNet(), STRConfig(s_init=-2.0, threshold_fn="exp"))
    counts = dense_flops_by_module(model, (3, 16, 16))
    expected = 0.0
    for name, module in prunable_layers(model):
        assert isinstance(module, STRMixin)
        density = float((module.weight.abs() > module.threshold()).float().mean())
        expected += counts[name] * density
    assert 0 < expected < sum(counts.values())
    assert sparse_flops(model, (3, 16, 16)) == pytest.approx(expected, abs=len(counts))


@pytest.mark.parametrize(
    ("flops", "nonzero", "total", "expected"),
    [(10, 1, 3, 3), (10, 1, 4, 3), (10, 3, 4, 8), (7, 0, 5, 0), (7, 5, 5, 7), (9, 1, 0, 0)],
)
def test_scale_flops_rounds_half_up(flops: int, nonzero: int, total: int, expected: int) -> None:
    assert scale_flops(flops, nonzero, total) == expected


# --- facts from the STR paper (DESIGN.md section 3) ---------------------------------------------


@pytest.fixture(scope="module")
def resnet50_counts() -> dict[str, int]:
    model = create_model("resnet50")
    return dense_flops_by_module(model, get_model_info("resnet50").input_shape)


def test_resnet50_dense_flops_fact(resnet50_counts: dict[str, int]) -> None:
    assert get_model_info("resnet50").input_shape == (3, 224, 224)
    assert sum(resnet50_counts.values()) == 4_089_284_608
    assert resnet50_counts["avgpool"] == 2048 * 7 * 7 == 100_352
    conv_fc = sum(f for name, f in resnet50_counts.items() if name != "avgpool")
    assert conv_fc == 4_089_184_256
    assert resnet50_counts["conv1"] == 64 * 112 * 112 * 3 * 49
    assert resnet50_counts["fc"] == 2048 * 1000
    assert len(resnet50_counts) == 54 + 1


def test_mobilenet_v1_dense_flops_fact() -> None:
    model = create_model("mobilenet_v1")
    total = dense_flops(model, get_model_info("mobilenet_v1").input_shape)
    assert total == pytest.approx(569e6, rel=0.01)
    assert total == 568_790_528  # measured: 568,740,352 conv+fc + 50,176 pool
