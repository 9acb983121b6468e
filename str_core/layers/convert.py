"""Whole-model conversion between dense layers and STR layers.

``sparsify`` swaps every ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` of any model for its STR
version (weights copied); ``densify`` swaps STR layers back for plain ones whose weights are the
thresholded weights, for deployment and exact accounting. Both work in place and return the model,
so ``densify(copy.deepcopy(model))`` exports while the STR model keeps training.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from torch import nn
from torch.nn.utils import parametrize

from str_core.config import STRConfig
from str_core.layers.str_layers import STR_LAYER_TYPES, STRConv1d, STRConv2d, STRLinear

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
"""Layer types whose weights count as prunable (STR layers subclass these)."""

_STR_FOR_DENSE: dict[type[nn.Module], type[STRConv1d] | type[STRConv2d] | type[STRLinear]] = {
    nn.Conv1d: STRConv1d,
    nn.Conv2d: STRConv2d,
    nn.Linear: STRLinear,
}


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs of every conv and linear layer, dense or STR, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]


def weight_parameter(module: nn.Module) -> nn.Parameter:
    """The trainable tensor behind ``module.weight``.

    Under ``torch.nn.utils.parametrize`` (the pruning masks of :mod:`str_core.pruning`),
    ``module.weight`` is computed from ``module.parametrizations.weight.original``, which is the
    parameter the optimizer must update; otherwise it is ``module.weight`` itself.

    Raises:
        TypeError: if the module has no weight parameter.
    """
    if parametrize.is_parametrized(module, "weight"):
        weight = module.parametrizations.weight.original  # type: ignore[union-attr]
    else:
        weight = getattr(module, "weight", None)
    if not isinstance(weight, nn.Parameter):
        raise TypeError(f"{type(module).__name__} has no weight parameter")
    return weight


def _is_excluded(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def sparsify(
    model: nn.Module, config: STRConfig | None = None, *, exclude: Iterable[str] = ()
) -> nn.Module:
    """Replace every dense conv/linear layer of ``model`` by its STR version, in place.

    Args:
        model: any module; layers that already are STR layers are left as they are.
        config: ``s_init``, threshold function and granularity (defaults: ``STRConfig()``).
        exclude: module names or glob patterns (``"layer1.*"``) to keep dense; added to
            ``config.exclude``.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: if an exclude name matches no prunable layer (a typo would otherwise leave
            the model silently different from what was asked).
    """
    config = config or STRConfig()
    patterns = (*config.exclude, *exclude)
    layers = prunable_layers(model)
    unmatched = [p for p in patterns if not any(_is_excluded(n, [p]) for n, _ in layers)]
    if unmatched:
        names = ", ".join(n for n, _ in layers[:8])
        raise ValueError(f"exclude pattern(s) {unmatched} match no prunable layer (e.g. {names})")
    for name, module in layers:
        if isinstance(module, STR_LAYER_TYPES) or _is_excluded(name, patterns):
            continue
        str_cls = _STR_FOR_DENSE.get(type(module))
        if (
            str_cls is None
        ):  # a user subclass of Conv2d etc.: leave it, we cannot copy it faithfully
            continue
        new = str_cls.from_dense(
            module,  # type: ignore[arg-type]
            s_init=config.s_init,
            threshold_fn=config.threshold_fn,
            granularity=config.granularity,
        )
        new.train(module.training)
        _set_submodule(model, name, new)
    return model


def densify(model: nn.Module) -> nn.Module:
    """Replace every STR layer of ``model`` by a plain layer with the thresholded weight, in place.

    Returns:
        ``model`` itself, with no STR parameters left.
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, STR_LAYER_TYPES):
            dense = module.to_dense()  # type: ignore[operator]
            dense.train(module.training)
            _set_submodule(model, name, dense)
    return model
