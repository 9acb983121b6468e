"""Sparsity and FLOP accounting (conventions of the STR paper, arXiv 2002.03231).

Sparsity counts conv/linear weights only (STR layers by their thresholded weight); FLOPs are
multiply-accumulates scaled by each layer's weight density, plus the average pools. See the
docstrings of :mod:`str_core.metrics.sparsity` and :mod:`str_core.metrics.flops`.
"""

from str_core.metrics.accounting import Accounting, LayerRow, account, account_with_budget
from str_core.metrics.flops import (
    FLOP_FORMULAS,
    FlopFormula,
    dense_flops,
    dense_flops_by_module,
    get_flop_formula,
    register_flops,
    scale_flops,
    sparse_flops,
)
from str_core.metrics.sparsity import (
    SparsityStats,
    global_sparsity,
    layer_sparsity,
    layer_stats,
    layer_weight,
    per_layer_stats,
    sparsity_stats,
)

__all__ = [
    "FLOP_FORMULAS",
    "Accounting",
    "FlopFormula",
    "LayerRow",
    "SparsityStats",
    "account",
    "account_with_budget",
    "dense_flops",
    "dense_flops_by_module",
    "get_flop_formula",
    "global_sparsity",
    "layer_sparsity",
    "layer_stats",
    "layer_weight",
    "per_layer_stats",
    "register_flops",
    "scale_flops",
    "sparse_flops",
    "sparsity_stats",
]
