"""Parameter groups and the learning-rate schedule."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from str_core.config import PruneConfig, STRConfig, TrainConfig
from str_core.data import DatasetSplits
from str_core.layers import sparsify
from str_core.pruning import attach_masks
from str_core.train import (
    Trainer,
    add_l1_gradients,
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
)

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


def _backward(model: TinyNet, data: DatasetSplits) -> None:
    x, y = data.train[:]  # type: ignore[index]
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()


def test_l1_groups_carry_the_coefficient_and_no_weight_decay(tiny_net: TinyNet) -> None:
    sparsify(tiny_net, STRConfig())
    cfg = TrainConfig(
        penalty="l1", weight_decay=1e-3, threshold_weight_decay=2e-3, other_weight_decay=0.0
    )
    groups = {g["name"]: g for g in param_groups(tiny_net, cfg)}
    assert {n: (g["weight_decay"], g["l1"]) for n, g in groups.items()} == {
        "weights": (0.0, 1e-3),
        "thresholds": (0.0, 2e-3),
        "other": (0.0, 0.0),
    }
    # l2 groups are unchanged: no "l1" key, so l2 checkpoints keep their optimizer state
    l2 = build_optimizer(tiny_net, TrainConfig(weight_decay=1e-3))
    assert all("l1" not in g for g in l2.state_dict()["param_groups"])


def test_l1_adds_lambda_sign_to_the_gradient(tiny_net: TinyNet, blobs: DatasetSplits) -> None:
    lam, lam_other = 0.05, 0.02
    opt = build_optimizer(
        tiny_net, TrainConfig(penalty="l1", weight_decay=lam, other_weight_decay=lam_other)
    )
    _backward(tiny_net, blobs)
    with torch.no_grad():
        tiny_net.conv.weight[0, 0, 0, 0] = 0.0  # sign(0) = 0: nothing added
    grads = {n: p.grad.clone() for n, p in tiny_net.named_parameters()}  # type: ignore[union-attr]
    add_l1_gradients(opt)
    for name, p in tiny_net.named_parameters():
        coefficient = lam if name.endswith(".weight") and name != "bn.weight" else lam_other
        assert torch.equal(p.grad, grads[name] + coefficient * torch.sign(p)), name  # type: ignore[arg-type]
    assert tiny_net.conv.weight.grad[0, 0, 0, 0] == grads["conv.weight"][0, 0, 0, 0]  # type: ignore[index]
    l2 = build_optimizer(tiny_net, TrainConfig(weight_decay=lam))
    before = {n: p.grad.clone() for n, p in tiny_net.named_parameters()}  # type: ignore[union-attr]
    add_l1_gradients(l2)  # a no-op for l2 groups
    assert all(torch.equal(p.grad, before[n]) for n, p in tiny_net.named_parameters())  # type: ignore[arg-type]


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_trainer_step_applies_the_penalty(
    penalty: str, tiny_net: TinyNet, blobs: DatasetSplits
) -> None:
    """One full-batch SGD step (no momentum) of the real trainer against p − lr·(∇L + penalty)."""
    lam, lr = 0.1, 0.5
    cfg = TrainConfig(
        epochs=1,
        batch_size=64,
        lr=lr,
        momentum=0.0,
        weight_decay=lam,
        schedule="constant",
        penalty=penalty,  # type: ignore[arg-type]
    )
    manual = copy.deepcopy(tiny_net)
    _backward(manual, blobs)
    Trainer(tiny_net, cfg, blobs).fit()
    for (name, p), (_, q) in zip(
        tiny_net.named_parameters(), manual.named_parameters(), strict=True
    ):
        extra = torch.sign(q) if penalty == "l1" else q
        expected = q - lr * (q.grad + lam * extra)  # type: ignore[operator]
        torch.testing.assert_close(p, expected, atol=1e-6, rtol=1e-5, msg=name)


def test_groups_use_the_trainable_weight_of_masked_layers(tiny_net: TinyNet) -> None:
    attach_masks(tiny_net, PruneConfig(method="dnw"))
    groups = {g["name"]: g for g in param_groups(tiny_net, TrainConfig())}
    weights = groups["weights"]["params"]
    assert weights[0] is tiny_net.conv.parametrizations.weight.original
    assert len(weights) == 2 and all(isinstance(p, torch.nn.Parameter) for p in weights)
