"""Per-layer accounting table: weights, nonzeros, sparsity, thresholds and FLOPs.

Follows the conventions of :mod:`str_core.metrics.sparsity` (weights of conv/linear layers only,
STR layers counted by their thresholded weight, exact zeros) and :mod:`str_core.metrics.flops`
(multiply-accumulates for one example, each conv/linear layer scaled by its weight density, plus
every average-pool module reached, dense). These are the STR paper's conventions (arXiv
2002.03231): dense ResNet-50 at 224 x 224 has 25,502,912 prunable weights and 4,089,284,608 FLOPs.

``account`` measures a model as it is; ``account_with_budget`` gives the same table as if each
layer had the sparsity given in a budget (``{layer_name: sparsity}``, e.g. from
:mod:`str_core.budgets`), which is how FLOPs of published per-layer budgets are recomputed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from str_core.layers import STRMixin, prunable_layers
from str_core.metrics.flops import dense_flops_by_module, scale_flops
from str_core.metrics.sparsity import layer_stats

LayerKind = Literal["conv", "linear"]


@dataclass(frozen=True)
class LayerRow:
    """One prunable layer of the table.

    Attributes:
        name: module name (``model.named_modules()`` key), e.g. ``"layer1.0.conv1"``.
        kind: ``"conv"`` or ``"linear"``.
        shape: weight shape, e.g. ``(64, 3, 7, 7)``.
        params: number of weights (biases excluded).
        nonzero: number of nonzero weights.
        sparsity: ``1 - nonzero / params``.
        threshold: mean threshold ``g(s)`` for STR layers; ``None`` for dense layers and for tables
            computed from a budget.
        dense_flops: MACs for one example at full density (0 if the forward pass never calls it).
        sparse_flops: ``dense_flops * nonzero / params``, rounded.
    """

    name: str
    kind: LayerKind
    shape: tuple[int, ...]
    params: int
    nonzero: int
    sparsity: float
    threshold: float | None
    dense_flops: int
    sparse_flops: int


@dataclass(frozen=True)
class Accounting:
    """The whole table and its totals.

    Attributes:
        rows: one row per prunable layer, in module order.
        pool_flops: MACs of the counted non-prunable modules (the average pools), never scaled.
        total_params: prunable weights of all rows (the sparsity denominator).
        total_nonzero: nonzero weights of all rows.
        sparsity: ``1 - total_nonzero / total_params`` (0.0 without prunable weights).
        dense_flops: dense MACs of all rows plus ``pool_flops``.
        sparse_flops: sparse MACs of all rows plus ``pool_flops``.
    """

    rows: tuple[LayerRow, ...]
    pool_flops: int
    total_params: int
    total_nonzero: int
    sparsity: float
    dense_flops: int
    sparse_flops: int

    @classmethod
    def from_rows(cls, rows: Sequence[LayerRow], pool_flops: int) -> Accounting:
        """Build the table and its totals from rows and the pools' MACs."""
        params = sum(r.params for r in rows)
        nonzero = sum(r.nonzero for r in rows)
        return cls(
            rows=tuple(rows),
            pool_flops=pool_flops,
            total_params=params,
            total_nonzero=nonzero,
            sparsity=1.0 - nonzero / params if params else 0.0,
            dense_flops=sum(r.dense_flops for r in rows) + pool_flops,
            sparse_flops=sum(r.sparse_flops for r in rows) + pool_flops,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["rows"] = [{**row, "shape": list(row["shape"])} for row in out["rows"]]
        return out

    def budget(self) -> dict[str, float]:
        """Layer name -> sparsity, in module order (the format of :mod:`str_core.budgets`)."""
        return {row.name: row.sparsity for row in self.rows}

    def with_budget(
        self, budget: Mapping[str, float], *, allow_missing: bool = False
    ) -> Accounting:
        """This table's layers and dense FLOPs with the sparsities of ``budget`` instead.

        Cheap (no forward pass); see :func:`account_with_budget` for the rules.

        Raises:
            ValueError: as :func:`account_with_budget`.
        """
        _check_budget([row.name for row in self.rows], budget, allow_missing)
        rows = []
        for row in self.rows:
            nonzero = round(row.params * (1.0 - budget.get(row.name, 0.0)))
            rows.append(
                _row(
                    row.name,
                    row.kind,
                    row.shape,
                    nonzero=nonzero,
                    threshold=None,
                    dense_flops=row.dense_flops,
                )
            )
        return Accounting.from_rows(rows, self.pool_flops)


def _row(
    name: str,
    kind: LayerKind,
    shape: tuple[int, ...],
    *,
    nonzero: int,
    threshold: float | None,
    dense_flops: int,
) -> LayerRow:
    params = math.prod(shape)
    return LayerRow(
        name=name,
        kind=kind,
        shape=shape,
        params=params,
        nonzero=nonzero,
        sparsity=1.0 - nonzero / params if params else 0.0,
        threshold=threshold,
        dense_flops=dense_flops,
        sparse_flops=scale_flops(dense_flops, nonzero, params),
    )


def _check_budget(names: Sequence[str], budget: Mapping[str, float], allow_missing: bool) -> None:
    known = set(names)
    unknown = [name for name in budget if name not in known]
    if unknown:
        raise ValueError(f"budget names layer(s) that are not prunable in the model: {unknown}")
    missing = [name for name in names if name not in budget]
    if missing and not allow_missing:
        raise ValueError(f"budget is missing {len(missing)} prunable layer(s): {missing}")
    bad = {name: s for name, s in budget.items() if not 0.0 <= s <= 1.0}
    if bad:
        raise ValueError(f"budget sparsities must be in [0, 1], got {bad}")


def _weight_shape(module: nn.Module) -> tuple[int, ...]:
    weight = module.weight
    if not isinstance(weight, Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return tuple(weight.shape)


def _build(
    model: nn.Module,
    input_shape: Sequence[int],
    measure: Callable[[nn.Module], tuple[int, float | None]],
) -> Accounting:
    """The table, with ``measure(layer) -> (nonzero, threshold)`` for each prunable layer."""
    flops = dense_flops_by_module(model, input_shape)
    layers = prunable_layers(model)
    rows = []
    for name, module in layers:
        kind: LayerKind = "linear" if isinstance(module, nn.Linear) else "conv"
        nonzero, threshold = measure(module)
        rows.append(
            _row(
                name,
                kind,
                _weight_shape(module),
                nonzero=nonzero,
                threshold=threshold,
                dense_flops=flops.get(name, 0),
            )
        )
    prunable = {name for name, _ in layers}
    pool_flops = sum(f for name, f in flops.items() if name not in prunable)
    return Accounting.from_rows(rows, pool_flops)


def account(model: nn.Module, input_shape: Sequence[int]) -> Accounting:
    """Measure ``model`` as it is: STR thresholds applied, zeros counted exactly.

    Args:
        model: any module whose forward takes one tensor.
        input_shape: shape of one example without the batch dim, e.g. ``(3, 224, 224)``.

    Returns:
        The per-layer table with totals.
    """

    def measure(module: nn.Module) -> tuple[int, float | None]:
        threshold = float(module.threshold().mean()) if isinstance(module, STRMixin) else None
        return layer_stats(module).nonzero, threshold

    return _build(model, input_shape, measure)


def account_with_budget(
    model: nn.Module,
    input_shape: Sequence[int],
    budget: Mapping[str, float],
    *,
    allow_missing: bool = False,
) -> Accounting:
    """The table as if each layer named in ``budget`` had that sparsity.

    Each layer gets ``nonzero = round(params * (1 - sparsity))``; the model's own weights are not
    looked at (only its shapes), and ``threshold`` is ``None`` in every row. To apply several
    budgets to one architecture, build the table once and call :meth:`Accounting.with_budget`.

    Args:
        model: the architecture the budget is for.
        input_shape: shape of one example without the batch dim.
        budget: layer name -> sparsity in ``[0, 1]``.
        allow_missing: treat prunable layers absent from ``budget`` as dense instead of failing.

    Returns:
        The per-layer table with totals.

    Raises:
        ValueError: if ``budget`` names layers that are not prunable layers of ``model``, misses
            some of them (unless ``allow_missing``), or holds a value outside ``[0, 1]``.
    """
    names = [name for name, _ in prunable_layers(model)]
    _check_budget(names, budget, allow_missing)  # before the forward pass

    def dense(module: nn.Module) -> tuple[int, float | None]:
        return math.prod(_weight_shape(module)), None

    table = _build(model, input_shape, dense)
    return table.with_budget(budget, allow_missing=allow_missing)
