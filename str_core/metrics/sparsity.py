"""Weight sparsity of prunable layers (STR, Kusupati et al., ICML 2020, arXiv 2002.03231).

Convention (DESIGN.md section 3), the one the paper reports:

* Sparsity is counted over the weights of the *prunable* layers: every ``nn.Conv1d``,
  ``nn.Conv2d`` and ``nn.Linear`` (dense or STR), the first conv and the classifier included.
  BatchNorm parameters, biases and STR threshold parameters are not counted.
* The counted weight of an STR layer is its thresholded weight ``sparse_weight()`` (what the layer
  computes with, equal to ``to_dense().weight``); that of a dense layer is its ``.weight``.
* A weight is pruned when it is exactly zero (``== 0``); no tolerance.
* ``sparsity = 1 - nonzero / total``; the denominator ``total`` is always reported with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from str_core.layers import PRUNABLE_TYPES, STRMixin, prunable_layers


@dataclass(frozen=True)
class SparsityStats:
    """Counts of nonzero and total prunable weights.

    Attributes:
        nonzero: number of weights that are not exactly zero.
        total: number of weights counted (the denominator).
    """

    nonzero: int
    total: int

    def __post_init__(self) -> None:
        if not 0 <= self.nonzero <= self.total:
            raise ValueError(f"need 0 <= nonzero <= total, got {self.nonzero}, {self.total}")

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights; 0.0 when there are no weights at all."""
        return 1.0 - self.density

    @property
    def density(self) -> float:
        """Fraction of nonzero weights; 1.0 when there are no weights at all."""
        return self.nonzero / self.total if self.total else 1.0

    def __add__(self, other: SparsityStats) -> SparsityStats:
        return SparsityStats(self.nonzero + other.nonzero, self.total + other.total)


def layer_weight(module: nn.Module) -> Tensor:
    """The weight that counts for sparsity: thresholded for STR layers, ``.weight`` otherwise.

    Args:
        module: a prunable layer (``nn.Conv1d``, ``nn.Conv2d``, ``nn.Linear`` or an STR layer).

    Returns:
        A detached tensor of the weight's shape, e.g. ``(out, in / groups, kh, kw)`` for a conv.

    Raises:
        TypeError: if ``module`` is not a prunable layer.
    """
    if not isinstance(module, PRUNABLE_TYPES):
        raise TypeError(f"{type(module).__name__} is not a prunable layer (conv or linear)")
    if isinstance(module, STRMixin):
        with torch.no_grad():
            return module.sparse_weight().detach()
    weight = module.weight
    if not isinstance(weight, Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight.detach()


def layer_stats(module: nn.Module) -> SparsityStats:
    """Nonzero and total weight counts of one prunable layer (see :func:`layer_weight`).

    Raises:
        TypeError: if ``module`` is not a prunable layer.
    """
    weight = layer_weight(module)
    return SparsityStats(nonzero=int(torch.count_nonzero(weight).item()), total=weight.numel())


def layer_sparsity(module: nn.Module) -> float:
    """Fraction of exactly-zero weights of one prunable layer.

    Raises:
        TypeError: if ``module`` is not a prunable layer.
    """
    return layer_stats(module).sparsity


def per_layer_stats(model: nn.Module) -> dict[str, SparsityStats]:
    """Counts for every prunable layer of ``model``, keyed by module name, in module order."""
    return {name: layer_stats(module) for name, module in prunable_layers(model)}


def sparsity_stats(model: nn.Module) -> SparsityStats:
    """Totals over all prunable layers of ``model`` (the denominator is ``.total``)."""
    total = SparsityStats(0, 0)
    for stats in per_layer_stats(model).values():
        total = total + stats
    return total


def global_sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over all prunable layers of ``model`` (0.0 if it has none)."""
    return sparsity_stats(model).sparsity
