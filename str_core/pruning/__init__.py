"""Pruning baselines at a requested sparsity and their per-layer budgets.

Gradual magnitude pruning (``gmp``, per layer, Zhu & Gupta 2017), global magnitude pruning
(``global_magnitude``) and DNW (``dnw``, Wortsman et al. 2019), with uniform, ERK (Evci et al.
2020) or given per-layer budgets, e.g. the budget STR learnt (arXiv 2002.03231) transferred by
layer name. A run is a dense model with :func:`attach_masks`, trained by the ordinary trainer with
:func:`pruning_callbacks`; :func:`bake` turns it into plain layers for export.
"""

from str_core.config import PruneConfig
from str_core.pruning.allocation import (
    erk_budget,
    erk_densities,
    layer_sizes,
    prune_budget,
    scale_budget,
    uniform_budget,
)
from str_core.pruning.masks import MagnitudeMask, TopKMask, attach_masks, bake, layer_masks
from str_core.pruning.pruner import GradualPruner, pruning_callbacks
from str_core.pruning.schedule import cubic_sparsity

__all__ = [
    "GradualPruner",
    "MagnitudeMask",
    "PruneConfig",
    "TopKMask",
    "attach_masks",
    "bake",
    "cubic_sparsity",
    "erk_budget",
    "erk_densities",
    "layer_masks",
    "layer_sizes",
    "prune_budget",
    "pruning_callbacks",
    "scale_budget",
    "uniform_budget",
]
