"""Optimizer parameter groups, optimizer and learning-rate schedule.

STR learns its per-layer sparsity through weight decay: decaying the threshold parameters ``s``
pulls them up from a negative ``s_init``, which raises g(s) and prunes more (arXiv 2002.03231,
section 3). The paper decays every parameter with the same λ. Here the three kinds of parameter
each get an explicit group so that choice is visible and can be changed:

* ``weights``: weights of prunable (conv/linear) layers, decay ``weight_decay``;
* ``thresholds``: STR threshold parameters ``s``, decay ``threshold_decay``;
* ``other``: BN parameters, biases and anything else, decay ``other_decay``.

The groups are checked to be disjoint and to cover every trainable parameter.

``TrainConfig.penalty`` chooses what a group's coefficient means. With ``"l2"`` (the paper) it is
torch's ``weight_decay``. With ``"l1"`` (an ablation) the group's ``weight_decay`` is 0 and the
coefficient is kept under the group key ``"l1"``; :func:`add_l1_gradients`, called between
``backward`` and ``step``, adds λ·sign(p) to each gradient (the subgradient of λ·‖p‖₁, 0 at 0).
l2 groups carry no ``"l1"`` key, so their optimizer state is what it always was.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from str_core.config import TrainConfig
from str_core.layers import PRUNABLE_TYPES, STR_LAYER_TYPES, weight_parameter

L1_KEY = "l1"
"""Optimizer-group key of the L1 coefficient (present only with ``penalty='l1'``)."""


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Split the trainable parameters into the ``weights``/``thresholds``/``other`` groups.

    Returns:
        Optimizer groups, each with ``name``, ``params`` and ``weight_decay`` keys (empty groups
        are dropped). With ``cfg.penalty == "l1"``, ``weight_decay`` is 0 and the group's
        coefficient is under :data:`L1_KEY`.

    Raises:
        RuntimeError: if the groups overlap or miss a trainable parameter (a bug, not bad input).
    """
    weights: list[Tensor] = []
    thresholds: list[Tensor] = []
    for module in model.modules():
        if isinstance(module, PRUNABLE_TYPES):
            weights.append(weight_parameter(module))
        if isinstance(module, STR_LAYER_TYPES):
            thresholds.append(module.get_parameter("s"))
    chosen = {id(p) for p in weights + thresholds}
    other: list[Tensor] = [p for p in model.parameters() if id(p) not in chosen]

    all_params = {id(p): p for p in model.parameters() if p.requires_grad}
    members = {"weights": weights, "thresholds": thresholds, "other": other}
    decay = {
        "weights": cfg.weight_decay,
        "thresholds": cfg.threshold_decay,
        "other": cfg.other_decay,
    }
    groups: list[dict[str, Any]] = [
        {
            "name": name,
            "params": [p for p in params if p.requires_grad],
            **_penalty(cfg, decay[name]),
        }
        for name, params in members.items()
    ]
    ids = [id(p) for g in groups for p in g["params"]]
    if len(ids) != len(set(ids)):
        raise RuntimeError("optimizer groups overlap: a parameter is in two groups")
    if set(ids) != set(all_params):
        raise RuntimeError("optimizer groups miss trainable parameters")
    return [g for g in groups if g["params"]]


def _penalty(cfg: TrainConfig, coefficient: float) -> dict[str, float]:
    """The group keys that apply ``coefficient`` as ``cfg.penalty``."""
    if cfg.penalty == "l1":
        return {"weight_decay": 0.0, L1_KEY: coefficient}
    return {"weight_decay": coefficient}


@torch.no_grad()
def add_l1_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Add λ·sign(p) to the gradient of every parameter of a group with an L1 coefficient λ.

    Call it after ``backward`` (and after any gradient all-reduce) and before ``step``.
    Parameters without a gradient are skipped, as torch's weight decay skips them. A no-op for
    groups without the :data:`L1_KEY` key (l2 runs).
    """
    for group in optimizer.param_groups:
        coefficient = float(group.get(L1_KEY, 0.0))
        if coefficient == 0.0:
            continue
        for p in group["params"]:
            if p.grad is not None:
                p.grad.add_(torch.sign(p), alpha=coefficient)


def group_sizes(groups: list[dict[str, Any]]) -> dict[str, int]:
    """Number of scalar parameters in each named group (for logs)."""
    return {g["name"]: sum(p.numel() for p in g["params"]) for g in groups}


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's choice) or Adam, over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    return torch.optim.Adam(groups, lr=cfg.lr)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, floor: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Linear warmup from ``1/warmup_steps`` to 1 over ``warmup_steps``, then cosine decay to
    ``floor`` (= min_lr / lr) at ``total_steps``, or constant.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warmup + cosine (or constant) schedule for ``cfg.epochs`` epochs."""
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        return lr_factor(step, total, warmup, cfg.schedule, floor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
