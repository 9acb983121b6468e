"""Gradual magnitude pruning during training, as a trainer callback.

:class:`GradualPruner` follows the cubic schedule of :mod:`str_core.pruning.schedule` from
``start_fraction`` to ``end_fraction`` of the training steps and clears entries of the
:class:`~str_core.pruning.masks.MagnitudeMask` that :func:`~str_core.pruning.masks.attach_masks`
put on every prunable layer:

* ``gmp`` (Zhu & Gupta 2017): per layer; at schedule fraction f ∈ [0, 1] layer l is pruned to
  ``round(b_l · f · n_l)`` weights, ``b_l`` its budget sparsity (uniform, ERK or given);
* ``global_magnitude``: one ranking of |W| over all layers, ``round(S · f · N)`` weights pruned.

Each update prunes the smallest |W| among the weights not yet pruned (masks only ever remove
weights), with exact counts (``topk``, not thresholds). Updates happen every
``max(1, steps_per_epoch // 4)`` steps from the start step and exactly at the end step, where the
counts reach the target. The schedule depends on the global step only and the masks live in the
model's ``state_dict``, so a run resumed from a checkpoint prunes exactly like an uninterrupted
one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from str_core.config import PruneConfig
from str_core.layers import prunable_layers, weight_parameter
from str_core.pruning.allocation import prune_budget
from str_core.pruning.masks import MagnitudeMask, layer_masks
from str_core.pruning.schedule import cubic_sparsity
from str_core.train.callbacks import Callback

if TYPE_CHECKING:
    from str_core.train.trainer import Trainer


def _masked_layers(model: nn.Module) -> dict[str, tuple[Tensor, MagnitudeMask]]:
    """Layer name -> (trainable weight, its magnitude mask) for every prunable layer.

    Raises:
        ValueError: if a prunable layer has no :class:`MagnitudeMask`.
    """
    masks = layer_masks(model)
    out: dict[str, tuple[Tensor, MagnitudeMask]] = {}
    for name, module in prunable_layers(model):
        mask = masks.get(name)
        if not isinstance(mask, MagnitudeMask):
            raise ValueError(
                f"layer {name!r} has no magnitude mask: call attach_masks(model, cfg) with a "
                "gradual method ('gmp' or 'global_magnitude') before training"
            )
        out[name] = (weight_parameter(module), mask)
    return out


@torch.no_grad()
def prune_smallest(layers: list[tuple[Tensor, MagnitudeMask]], count: int) -> None:
    """Clear the mask entries of the ``count`` smallest |W| not yet pruned, over all ``layers``.

    Args:
        layers: (weight, mask) pairs ranked together (one pair: a per-layer ranking).
        count: number of further weights to prune; nothing happens for ``count <= 0``.
    """
    if count <= 0:
        return
    # (Σ n,) scores: |W| of kept weights, +inf for pruned ones so they are never chosen again
    scores = torch.cat(
        [w.detach().abs().flatten().masked_fill(~m.mask.flatten(), float("inf")) for w, m in layers]
    )
    keep = torch.cat([m.mask.flatten() for _, m in layers])
    keep[scores.topk(count, largest=False, sorted=False).indices] = False
    offset = 0
    for _, m in layers:
        n = m.mask.numel()
        m.mask.copy_(keep[offset : offset + n].view_as(m.mask))
        offset += n


class GradualPruner(Callback):
    """Prunes a model with magnitude masks to ``cfg.target_sparsity`` during training.

    Args:
        cfg: a ``gmp`` or ``global_magnitude`` configuration; the model given to the trainer must
            carry :func:`~str_core.pruning.masks.attach_masks` of the same configuration.

    Raises:
        ValueError: for ``dnw``, which prunes in its forward pass and needs no pruner.
    """

    def __init__(self, cfg: PruneConfig) -> None:
        if cfg.method not in ("gmp", "global_magnitude"):
            raise ValueError(f"GradualPruner runs 'gmp' or 'global_magnitude', not {cfg.method!r}")
        self.cfg = cfg
        self.steps_per_epoch = 0
        self.start_step = 0
        self.end_step = 0
        self.interval = 1
        self._layers: dict[str, tuple[Tensor, MagnitudeMask]] = {}
        self._budget: dict[str, float] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        """Derive the step schedule from the trainer and find the masks (after a resume too)."""
        # optimizer steps per epoch on this rank: ceil(rank's share / rank batch), the same on
        # every rank of a data-parallel run
        self.steps_per_epoch = trainer.steps_per_epoch
        total = trainer.cfg.epochs * self.steps_per_epoch
        self.end_step = max(1, round(self.cfg.end_fraction * total))
        self.start_step = min(round(self.cfg.start_fraction * total), self.end_step - 1)
        self.interval = max(1, self.steps_per_epoch // 4)
        self._layers = _masked_layers(trainer.model)
        if self.cfg.method == "gmp":
            self._budget = prune_budget(trainer.model, self.cfg)

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        """Update the masks on the schedule's update steps."""
        t = trainer.epoch * self.steps_per_epoch + step  # global step, from 1
        if self.is_update_step(t):
            self.prune_to(cubic_sparsity(t, self.start_step, self.end_step, 1.0))

    def is_update_step(self, t: int) -> bool:
        """Whether the masks are updated after global step ``t``."""
        if not self.start_step <= t <= self.end_step:
            return False
        return t == self.end_step or (t - self.start_step) % self.interval == 0

    def prune_to(self, fraction: float) -> None:
        """Prune to ``fraction`` of the way to the target (1.0: the target itself)."""
        if self.cfg.method == "global_magnitude":
            layers = list(self._layers.values())
            total = sum(m.mask.numel() for _, m in layers)
            wanted = round(self.cfg.target_sparsity * fraction * total)
            prune_smallest(layers, wanted - sum(m.pruned for _, m in layers))
            return
        for name, (weight, mask) in self._layers.items():
            wanted = round(self._budget[name] * fraction * mask.mask.numel())
            prune_smallest([(weight, mask)], wanted - mask.pruned)


def pruning_callbacks(cfg: PruneConfig) -> list[Callback]:
    """The trainer callbacks a pruning baseline needs: a :class:`GradualPruner` for the gradual
    methods, none for ``dnw``."""
    if cfg.method == "dnw":
        return []
    return [GradualPruner(cfg)]
