"""Dense FLOP counts per module, from a registry of small formulas (STR, arXiv 2002.03231).

Convention (DESIGN.md section 3), the one the STR paper uses for its ResNet-50 and MobileNetV1
tables:

* "FLOPs" are multiply-accumulates (MACs), not 2 x MACs. Biases are not counted.
* Conv layers: ``out_elements * (in_channels / groups) * kernel_volume``, where ``out_elements``
  is the number of elements of the layer's output (so stride, padding, dilation and depthwise or
  grouped convs are all handled through the measured output shape).
* Linear layers: ``in_features * out_features`` for every row of the input (any leading dims).
* Average pools (``AdaptiveAvgPool1d/2d``, ``AvgPool1d/2d``): the number of input elements. Every
  registered pooling *module* reached in the forward pass is counted; in torchvision-style
  networks that is only the final global pool (2048 x 7 x 7 = 100,352 for ResNet-50 at 224).
  Pools written as functional calls (``F.adaptive_avg_pool2d``, ``x.mean(...)``) are not seen.
* BatchNorm, ReLU, max-pool and residual additions are not counted.
* Counts are for one example: shapes come from forward hooks during a single forward pass of a
  batch-1 zero input (model in eval mode, under ``torch.no_grad()``; training flags restored).
  A module called several times contributes once per call; a module never called counts 0.

Sparse FLOPs scale each conv/linear layer's dense count by its weight density
(``nonzero / numel``, see :mod:`str_core.metrics.sparsity`); pools stay dense. The per-layer
table lives in :mod:`str_core.metrics.accounting`.

Extend the registry with ``@register_flops(MyModule)``; lookup walks the class MRO, so subclasses
(``STRConv2d`` of ``nn.Conv2d``) use their parent's formula unless they register their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from str_core.layers import PRUNABLE_TYPES
from str_core.metrics.sparsity import layer_stats

FlopFormula = Callable[[nn.Module, torch.Size, torch.Size], int]
"""``formula(module, input_shape, output_shape) -> MACs`` for one call of ``module``."""

FLOP_FORMULAS: dict[type[nn.Module], FlopFormula] = {}
"""Registered dense-FLOP formulas by exact module type."""


def register_flops(*module_types: type[nn.Module]) -> Callable[[FlopFormula], FlopFormula]:
    """Decorator registering a dense-FLOP formula for one or more module types.

    Args:
        module_types: the classes the formula applies to (subclasses inherit it).

    Returns:
        A decorator that registers the function and returns it unchanged.

    Raises:
        ValueError: if no type is given or a type already has a formula.
    """
    if not module_types:
        raise ValueError("register_flops needs at least one module type")

    def decorator(fn: FlopFormula) -> FlopFormula:
        taken = [t.__name__ for t in module_types if t in FLOP_FORMULAS]
        if taken:
            raise ValueError(f"a FLOP formula is already registered for {taken}")
        for module_type in module_types:
            FLOP_FORMULAS[module_type] = fn
        return fn

    return decorator


def get_flop_formula(module: nn.Module | type[nn.Module]) -> FlopFormula | None:
    """The formula for a module (or module type), walking its MRO; ``None`` if there is none."""
    cls = module if isinstance(module, type) else type(module)
    for base in cls.__mro__:
        formula = FLOP_FORMULAS.get(base)
        if formula is not None:
            return formula
    return None


@register_flops(nn.Conv1d, nn.Conv2d)
def conv_flops(module: nn.Module, input_shape: torch.Size, output_shape: torch.Size) -> int:
    """``out_elements * (in_channels / groups) * kernel_volume`` MACs."""
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    in_per_group = module.in_channels // module.groups
    return math.prod(output_shape) * in_per_group * math.prod(module.kernel_size)


@register_flops(nn.Linear)
def linear_flops(module: nn.Module, input_shape: torch.Size, output_shape: torch.Size) -> int:
    """``rows * in_features * out_features`` MACs; ``rows`` is the product of leading dims."""
    assert isinstance(module, nn.Linear)
    rows = math.prod(output_shape[:-1])
    return rows * module.in_features * module.out_features


@register_flops(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AvgPool2d)
def avg_pool_flops(module: nn.Module, input_shape: torch.Size, output_shape: torch.Size) -> int:
    """One operation per input element."""
    return math.prod(input_shape)


def _dummy_input(model: nn.Module, input_shape: Sequence[int]) -> Tensor:
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    return torch.zeros((1, *input_shape), device=device, dtype=dtype)


def dense_flops_by_module(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Dense MACs of every module with a registered formula, from one batch-1 forward pass.

    Args:
        model: any module whose ``forward`` takes one tensor.
        input_shape: shape of one example without the batch dim, e.g. ``(3, 224, 224)``.

    Returns:
        Module name -> MACs for one example, in module order, for the modules the forward pass
        reached (summed over calls).
    """
    counts: dict[str, int] = {}
    handles = []

    def make_hook(name: str, formula: FlopFormula) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            in_shape = args[0].shape if args and isinstance(args[0], Tensor) else torch.Size()
            out_shape = output.shape if isinstance(output, Tensor) else torch.Size()
            counts[name] = counts.get(name, 0) + formula(module, in_shape, out_shape)

        return hook

    order: list[str] = []
    for name, module in model.named_modules():
        formula = get_flop_formula(module)
        if formula is not None:
            order.append(name)
            handles.append(module.register_forward_hook(make_hook(name, formula)))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(_dummy_input(model, input_shape))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return {name: counts[name] for name in order if name in counts}


def dense_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Total dense MACs of ``model`` for one example of shape ``input_shape`` (no batch dim)."""
    return sum(dense_flops_by_module(model, input_shape).values())


def sparse_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs with each conv/linear layer scaled by its measured weight density.

    Each prunable layer contributes ``round(dense * nonzero / numel)``; other counted modules
    (the pools) contribute their dense count.

    Args:
        model: any module; STR layers count their thresholded weight.
        input_shape: shape of one example without the batch dim.

    Returns:
        Total sparse MACs for one example.
    """
    modules = dict(model.named_modules())
    total = 0
    for name, flops in dense_flops_by_module(model, input_shape).items():
        module = modules[name]
        if isinstance(module, PRUNABLE_TYPES):
            stats = layer_stats(module)
            total += scale_flops(flops, stats.nonzero, stats.total)
        else:
            total += flops
    return total


def scale_flops(flops: int, nonzero: int, total: int) -> int:
    """``flops * nonzero / total`` rounded half up in exact integers (0 without weights)."""
    if total <= 0:
        return 0
    return (2 * flops * nonzero + total) // (2 * total)
