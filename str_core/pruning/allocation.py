"""Per-layer sparsity budgets for a requested overall sparsity.

A budget is ``{layer_name: sparsity}`` over the prunable layers of a model (the format of
:mod:`str_core.budgets`). Three allocations:

* uniform: every prunable layer at the target sparsity;
* Erdős–Rényi-Kernel (ERK; Evci et al. 2020, "Rigging the Lottery", arXiv 1911.11134): the density
  of layer l is ε·r_l with r_l = sum(shape) / prod(shape), e.g. (out + in + kh + kw) /
  (out·in·kh·kw) for a conv weight (out, in, kh, kw) and (out + in) / (out·in) for a linear one;
* a given budget (a learnt STR budget, a budget file), rescaled to hit the target exactly.

ERK and rescaling share one solver: densities proportional to scores r_l, d_l = ε·r_l, with one
factor ε such that the nonzeros Σ d_l·n_l are (1 − S)·N. Capacity correction: a layer whose
density would exceed 1 is made dense and ε is solved again over the others, until none exceeds 1.
ε only grows from one round to the next, so every layer made dense stays rightly dense.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from torch import nn

from str_core.budgets import Budget, validate_budget
from str_core.config import PruneConfig
from str_core.layers import prunable_layers, weight_parameter


def layer_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Weight shape of every prunable layer of ``model``, keyed by module name, in module order."""
    return {name: tuple(weight_parameter(m).shape) for name, m in prunable_layers(model)}


def layer_sizes(model: nn.Module) -> dict[str, int]:
    """Number of weights of every prunable layer of ``model``, keyed by module name."""
    return {name: math.prod(shape) for name, shape in layer_shapes(model).items()}


def _check_target(target: float) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target sparsity must be in [0, 1], got {target}")


def _solve_densities(
    scores: Mapping[str, float],
    sizes: Mapping[str, int],
    density: float,
    dense: Collection[str] = (),
) -> dict[str, float]:
    """Densities ``min(1, ε·score)`` whose nonzeros ``Σ d·n`` are ``density·Σ n``.

    Args:
        scores: layer name -> nonnegative score (relative density).
        sizes: layer name -> number of weights (same names as ``scores``).
        density: requested overall density in ``[0, 1]``.
        dense: layers fixed at density 1 from the start.

    Raises:
        ValueError: if no ε reaches ``density`` (the fixed dense layers alone hold more nonzeros,
            or the layers with a positive score cannot hold enough).
    """
    total = sum(sizes.values())
    wanted = density * total
    fixed = set(dense)
    while True:
        rest = [n for n in scores if n not in fixed]
        free = wanted - sum(sizes[n] for n in fixed)  # nonzeros left for the scaled layers
        divisor = sum(scores[n] * sizes[n] for n in rest)
        if free < -1e-9 * total:
            held = sum(sizes[n] for n in fixed)
            raise ValueError(
                f"overall density {density:.6g} is unreachable: the dense layers alone hold "
                f"{held} weights, more than the {wanted:.0f} nonzeros allowed of {total}"
            )
        if divisor <= 0:
            if free > 1e-9 * total:
                raise ValueError(
                    f"overall density {density:.6g} is unreachable: the layers that may hold "
                    "weights are all dense already"
                )
            eps = 0.0
        else:
            eps = max(free, 0.0) / divisor
        over = {n for n in rest if eps * scores[n] > 1.0}
        if not over:
            break
        fixed |= over
    return {n: 1.0 if n in fixed else eps * scores[n] for n in scores}


def _sparsities(densities: Mapping[str, float]) -> Budget:
    return validate_budget({n: min(1.0, max(0.0, 1.0 - d)) for n, d in densities.items()})


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities of weight tensors shaped ``shapes`` at overall ``density``.

    Args:
        shapes: layer name -> weight shape, e.g. ``(out, in, kh, kw)`` or ``(out, in)``.
        density: overall fraction of nonzero weights, in ``[0, 1]``.

    Returns:
        Layer name -> density in ``[0, 1]``; ``Σ d·n = density·N`` up to float rounding.

    Raises:
        ValueError: if ``density`` is outside ``[0, 1]`` or a shape is empty or has a zero.
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    bad = [n for n, s in shapes.items() if not s or math.prod(s) <= 0]
    if bad:
        raise ValueError(f"layers with empty weight shapes: {bad}")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    scores = {n: sum(s) / sizes[n] for n, s in shapes.items()}
    return _solve_densities(scores, sizes, density)


def uniform_budget(model: nn.Module, target: float) -> Budget:
    """Every prunable layer of ``model`` at sparsity ``target``."""
    _check_target(target)
    return validate_budget(dict.fromkeys(layer_sizes(model), float(target)))


def erk_budget(model: nn.Module, target: float) -> Budget:
    """ERK sparsities of ``model``'s prunable layers at overall sparsity ``target``.

    Every prunable layer takes part (the first conv and the classifier too); the capacity
    correction decides which layers end up dense.
    """
    _check_target(target)
    return _sparsities(erk_densities(layer_shapes(model), 1.0 - target))


def check_budget_names(budget: Mapping[str, float], names: Collection[str]) -> None:
    """Require ``budget`` to name exactly the layers ``names``.

    Raises:
        ValueError: listing the missing and the unknown layer names.
    """
    missing = [n for n in names if n not in budget]
    unknown = [n for n in budget if n not in names]
    if missing or unknown:
        raise ValueError(
            "budget must name exactly the model's prunable layers: "
            f"missing {missing}, unknown {unknown}"
        )


def scale_budget(budget: Mapping[str, float], sizes: Mapping[str, int], target: float) -> Budget:
    """Rescale ``budget`` so the overall sparsity over ``sizes`` is exactly ``target``.

    The densities ``1 − s`` are multiplied by one common factor (ERK's solver with the densities as
    scores): the budget keeps its shape, layers at density 1 stay dense, layers at density 0 stay
    empty, and a layer that would exceed density 1 is made dense (capacity correction).

    Args:
        budget: layer name -> sparsity in ``[0, 1]``.
        sizes: layer name -> number of weights (:func:`layer_sizes`).
        target: overall sparsity in ``[0, 1]``.

    Returns:
        Layer name -> sparsity, in the order of ``sizes``.

    Raises:
        ValueError: if ``budget`` misses or adds layers, holds a value outside ``[0, 1]``, or
            cannot reach ``target`` (its dense layers alone exceed the allowed nonzeros, or its
            nonempty layers cannot hold them).
    """
    _check_target(target)
    checked = validate_budget(budget)
    check_budget_names(checked, list(sizes))
    scores = {n: 1.0 - checked[n] for n in sizes}
    dense = [n for n, d in scores.items() if d >= 1.0]
    return _sparsities(_solve_densities(scores, sizes, 1.0 - target, dense))


def prune_budget(model: nn.Module, cfg: PruneConfig) -> Budget:
    """The per-layer budget of ``cfg.allocation`` for ``model`` at ``cfg.target_sparsity``.

    Raises:
        ValueError: if a given budget does not name exactly the model's prunable layers or
            cannot reach the target.
    """
    if cfg.allocation == "uniform":
        return uniform_budget(model, cfg.target_sparsity)
    if cfg.allocation == "erk":
        return erk_budget(model, cfg.target_sparsity)
    assert cfg.budget is not None  # PruneConfig guarantees it for "given"
    return scale_budget(cfg.budget, layer_sizes(model), cfg.target_sparsity)
