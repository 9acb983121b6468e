"""Parameter groups and the learning-rate schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from str_core.config import STRConfig, TrainConfig
from str_core.layers import sparsify
from str_core.train import build_optimizer, build_scheduler, lr_factor, param_groups

from .conftest import TinyNet


def test_groups_are_disjoint_exhaustive_and_decayed_as_configured(tiny_net: TinyNet) -> None:
    sparsify(tiny_net, STRConfig())
    cfg = TrainConfig(weight_decay=1e-3, threshold_weight_decay=2e-3, other_weight_decay=0.0)
    groups = {g["name"]: g for g in param_groups(tiny_net, cfg)}
    assert set(groups) == {"weights", "thresholds", "other"}
    names = {id(p): n for n, p in tiny_net.named_parameters()}
    in_group = {g: sorted(names[id(p)] for p in groups[g]["params"]) for g in groups}
    assert in_group == {
        "weights": ["conv.weight", "fc.weight"],
        "thresholds": ["conv.s", "fc.s"],
        "other": ["bn.bias", "bn.weight", "conv.bias", "fc.bias"],
    }
    assert [groups[g]["weight_decay"] for g in ("weights", "thresholds", "other")] == [
        1e-3,
        2e-3,
        0.0,
    ]


def test_paper_default_decays_everything_with_lambda(tiny_net: TinyNet) -> None:
    sparsify(tiny_net, STRConfig())
    groups = param_groups(tiny_net, TrainConfig(weight_decay=5e-4))
    assert {g["weight_decay"] for g in groups} == {5e-4}


def test_dense_model_has_no_threshold_group_and_frozen_params_are_left_out(
    tiny_net: TinyNet,
) -> None:
    tiny_net.bn.weight.requires_grad_(False)
    groups = {g["name"]: g for g in param_groups(tiny_net, TrainConfig())}
    assert set(groups) == {"weights", "other"}
    assert all(p is not tiny_net.bn.weight for p in groups["other"]["params"])


def test_adam_and_sgd(tiny_net: TinyNet) -> None:
    assert isinstance(build_optimizer(tiny_net, TrainConfig(optimizer="adam")), torch.optim.Adam)
    sgd = build_optimizer(tiny_net, TrainConfig(momentum=0.875, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.875 and sgd.param_groups[0]["nesterov"]


def test_warmup_then_cosine() -> None:
    # 10 steps: 2 warmup steps, cosine over the remaining 8
    factors = [lr_factor(s, 10, 2, "cosine", 0.0) for s in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == 1.0
    assert factors[6] == pytest.approx(0.5)
    assert all(a >= b for a, b in itertools.pairwise(factors[1:]))
    assert lr_factor(10, 10, 2, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(7, 10, 0, "constant", 0.0) == 1.0


def test_scheduler_reaches_min_lr(tiny_net: TinyNet) -> None:
    cfg = TrainConfig(epochs=3, lr=0.2, min_lr=0.02, warmup_epochs=1)
    opt = build_optimizer(tiny_net, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=4)
    lrs = []
    for _ in range(12):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.05)  # first warmup step: lr / 4
    assert max(lrs) == pytest.approx(0.2)
    assert sched.get_last_lr()[0] == pytest.approx(0.02)
    assert not any(math.isnan(v) for v in lrs)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"epochs": 3, "epoch": 4})
    assert TrainConfig.from_dict({"epochs": 3}).epochs == 3
