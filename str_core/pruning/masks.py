"""Pruning masks on the weights of prunable layers, as ``torch.nn.utils.parametrize`` modules.

``attach_masks`` registers one parametrization on the ``weight`` of every prunable layer, so
``module.weight`` is the masked weight everywhere (forward pass, :mod:`str_core.metrics`, export)
and the trainable tensor is ``module.parametrizations.weight.original``
(:func:`str_core.layers.weight_parameter`). Why parametrize rather than layer subclasses as for
STR: the baselines must wrap any conv/linear layer of any model without rebuilding it, and
``remove_parametrizations(leave_parametrized=True)`` gives the export for free (:func:`bake`).

* :class:`MagnitudeMask` (``gmp``, ``global_magnitude``): ``W ⊙ mask`` with a boolean ``mask``
  buffer, all ones at the start; :class:`~str_core.pruning.pruner.GradualPruner` clears entries.
  Pruned weights get no gradient (∂(W ⊙ m)/∂W = m).
* :class:`TopKMask` (``dnw``, Wortsman et al. 2019, arXiv 1906.00586): in every forward pass, keep
  the ``keep`` largest |W| (exactly ``keep``, ties broken by ``topk``) and zero the rest; the
  backward is straight-through, so every weight, pruned ones included, gets the loss gradient
  unmasked and may grow back into the top k.

The masks (``mask``) and kept counts (``keep``) are buffers: ``model.state_dict()`` holds them
(under ``<layer>.parametrizations.weight.0.``) and loading a checkpoint into a model with masks
attached the same way restores them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from str_core.config import PruneConfig
from str_core.layers import STR_LAYER_TYPES, prunable_layers, weight_parameter
from str_core.pruning.allocation import prune_budget


class MagnitudeMask(nn.Module):
    """``W ⊙ mask`` with a fixed boolean mask that pruning clears entry by entry.

    Args:
        weight: the weight the mask is for (its shape and device).
    """

    mask: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask

    @property
    def pruned(self) -> int:
        """Number of weights the mask removes."""
        return int(self.mask.numel() - torch.count_nonzero(self.mask))


def topk_mask(weight: Tensor, keep: int) -> Tensor:
    """Boolean mask of exactly ``keep`` largest-magnitude entries of ``weight``.

    Args:
        weight: any shape.
        keep: number of entries to keep, clipped to ``[0, weight.numel()]``.

    Returns:
        A bool tensor shaped like ``weight``.
    """
    flat = weight.detach().abs().flatten()
    n = flat.numel()
    keep = min(max(keep, 0), n)
    if keep <= n - keep:  # select the smaller side with topk
        mask = torch.zeros(n, dtype=torch.bool, device=weight.device)
        mask[flat.topk(keep, largest=True, sorted=False).indices] = True
    else:
        mask = torch.ones(n, dtype=torch.bool, device=weight.device)
        mask[flat.topk(n - keep, largest=False, sorted=False).indices] = False
    return mask.view_as(weight)


class _StraightThrough(torch.autograd.Function):
    """``W ⊙ mask`` forward, identity backward (the gradient reaches every weight)."""

    @staticmethod
    def forward(weight: Tensor, mask: Tensor) -> Tensor:
        return weight * mask

    @staticmethod
    def setup_context(
        ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor, Tensor], output: Tensor
    ) -> None:
        pass  # nothing to save: the backward ignores the mask

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class TopKMask(nn.Module):
    """DNW: keep the ``keep`` largest |W| in every forward pass, straight-through backward.

    Args:
        weight: the weight the mask is for.
        sparsity: fraction of weights to zero; ``keep = round((1 - sparsity) · numel)``.
    """

    keep: Tensor

    def __init__(self, weight: Tensor, sparsity: float) -> None:
        super().__init__()
        if not 0.0 <= sparsity <= 1.0:
            raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
        self.numel = weight.numel()
        self._keep = round((1.0 - sparsity) * self.numel)
        # an int64 buffer, not a float density: exact whatever dtype the model is cast to
        self.register_buffer(
            "keep", torch.tensor(self._keep, dtype=torch.int64, device=weight.device)
        )
        # the forward reads the count as a Python int (no device sync): refresh it on loading
        self.register_load_state_dict_post_hook(_refresh_keep)  # type: ignore[no-untyped-call]

    def forward(self, weight: Tensor) -> Tensor:
        mask = topk_mask(weight, self._keep)
        out: Tensor = _StraightThrough.apply(weight, mask)  # type: ignore[no-untyped-call]
        return out

    @property
    def pruned(self) -> int:
        """Number of weights zeroed in each forward pass."""
        return self.numel - self._keep


def _refresh_keep(module: nn.Module, incompatible_keys: object) -> None:
    if isinstance(module, TopKMask):
        module._keep = int(module.keep)


Mask = MagnitudeMask | TopKMask


def _layer_mask(module: nn.Module) -> Mask | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:  # type: ignore[union-attr]
        if isinstance(p, MagnitudeMask | TopKMask):
            return p
    return None


def layer_masks(model: nn.Module) -> dict[str, Mask]:
    """The mask of every prunable layer of ``model`` that has one, keyed by module name."""
    out: dict[str, Mask] = {}
    for name, module in prunable_layers(model):
        mask = _layer_mask(module)
        if mask is not None:
            out[name] = mask
    return out


def attach_masks(model: nn.Module, cfg: PruneConfig) -> nn.Module:
    """Put a pruning mask on the weight of every prunable layer of ``model``, in place.

    ``gmp`` and ``global_magnitude`` get a :class:`MagnitudeMask` (all ones: pruning is done
    during training by :class:`~str_core.pruning.pruner.GradualPruner`); ``dnw`` gets a
    :class:`TopKMask` at its layer's budget sparsity (:func:`prune_budget`) from step 0.

    Args:
        model: a dense model (no STR layers, no masks yet).
        cfg: the pruning baseline.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: if the model has STR layers or masks already, has no prunable layer, or the
            budget does not fit it (see :func:`~str_core.pruning.allocation.prune_budget`).
    """
    layers = prunable_layers(model)
    if not layers:
        raise ValueError("the model has no prunable (conv or linear) layer")
    str_layers = [n for n, m in layers if isinstance(m, STR_LAYER_TYPES)]
    if str_layers:
        raise ValueError(f"pruning baselines need a dense model; STR layers: {str_layers[:5]}")
    masked = [n for n, m in layers if parametrize.is_parametrized(m, "weight")]
    if masked:
        raise ValueError(f"layers already have a parametrized weight: {masked[:5]}")
    # global_magnitude ranks all layers together and has no per-layer budget
    budget = prune_budget(model, cfg) if cfg.method != "global_magnitude" else {}
    for name, module in layers:
        weight = weight_parameter(module)
        mask: Mask = (
            TopKMask(weight, budget[name]) if cfg.method == "dnw" else MagnitudeMask(weight)
        )
        parametrize.register_parametrization(module, "weight", mask)
    return model


def bake(model: nn.Module) -> nn.Module:
    """Remove the masks of :func:`attach_masks`, leaving the masked weights as plain parameters.

    For export: parametrized modules cannot be pickled. In place; a no-op on a model without
    masks. The weight parameter keeps its identity (optimizers holding it stay valid).

    Each masked layer is replaced by a new module of its plain class sharing the layer's state;
    ``parametrize.remove_parametrizations`` is not used because it edits the layer's class, which
    a ``copy.deepcopy`` of the model shares with the original (baking an export copy would break
    the model still training).

    Returns:
        ``model`` itself, with plain layers of the same outputs and sparsity.
    """
    for name, module in prunable_layers(model):
        if _layer_mask(module) is None:
            continue
        original = weight_parameter(module)
        masked = module.weight
        assert isinstance(masked, Tensor)
        with torch.no_grad():
            original.copy_(masked)
        plain_cls: type[nn.Module] = type(module).__bases__[0]
        plain = object.__new__(plain_cls)
        plain.__dict__.update(module.__dict__)
        plain._parameters = {**module._parameters, "weight": original}
        plain._buffers = dict(module._buffers)
        plain._modules = {k: m for k, m in module._modules.items() if k != "parametrizations"}
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, plain)
    return model
