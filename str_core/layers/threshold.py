"""The STR soft-threshold operator and the threshold functions ``g``.

STR (Kusupati et al., ICML 2020, arXiv 2002.03231) uses a layer's weight as

    Ŵ = S_g(W, s) = sign(W) · relu(|W| − g(s))

with a learnable ``s`` and a threshold function ``g`` that is continuous, non-decreasing and
positive, with g(s) → 0 as s → −∞.

Two implementations live here:

* :func:`soft_threshold_reference` is the formula written with autograd ops; it is the
  specification and the baseline of ``benchmarks/str_overhead.py``. Autograd keeps several
  weight-sized intermediates alive for its backward.
* :func:`soft_threshold` is what the layers use: a custom autograd Function whose forward is
  ``W − clamp(W, −t, t)`` (equal to the formula) and which saves only its output Ŵ. The layer's
  conv/matmul keeps Ŵ for its own backward anyway, so the threshold costs no extra memory in the
  autograd graph. Its backward reads everything it needs off Ŵ:

      ∂L/∂W = ∇_Ŵ L ⊙ 1[Ŵ ≠ 0]                 (= 1[|W| > t] almost everywhere)
      ∂L/∂t = −Σ ∇_Ŵ L ⊙ sign(Ŵ)               (summed to the shape of t)

  and ``t = g(s)`` is an ordinary autograd op, so ∂L/∂s = g′(s) · ∂L/∂t comes for free.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ThresholdFn = Callable[[Tensor], Tensor]

THRESHOLD_FUNCTIONS: dict[str, ThresholdFn] = {}


def register_threshold_fn(name: str, fn: ThresholdFn) -> ThresholdFn:
    """Register a threshold function ``g`` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """
    if name in THRESHOLD_FUNCTIONS:
        raise ValueError(f"threshold function {name!r} is already registered")
    THRESHOLD_FUNCTIONS[name] = fn
    return fn


def get_threshold_fn(name_or_fn: str | ThresholdFn) -> ThresholdFn:
    """Resolve a threshold function given by name or as a callable.

    Raises:
        KeyError: for an unknown name; the message lists the valid names.
    """
    if callable(name_or_fn):
        return name_or_fn
    try:
        return THRESHOLD_FUNCTIONS[name_or_fn]
    except KeyError:
        valid = ", ".join(sorted(THRESHOLD_FUNCTIONS))
        raise KeyError(f"unknown threshold function {name_or_fn!r}; valid: {valid}") from None


def threshold_fn_name(fn: ThresholdFn) -> str:
    """The registered name of ``fn``, or its qualified name if it is not registered."""
    for name, registered in THRESHOLD_FUNCTIONS.items():
        if registered is fn:
            return name
    return getattr(fn, "__qualname__", repr(fn))


# The paper's default: bounded by 1, so it suits weights of magnitude < 1.
register_threshold_fn("sigmoid", torch.sigmoid)
# The alternative the paper names: unbounded, same constraints, relative changes of s act
# multiplicatively on the threshold.
register_threshold_fn("exp", torch.exp)


def soft_threshold_reference(weight: Tensor, s: Tensor, g: ThresholdFn = torch.sigmoid) -> Tensor:
    """STR's formula with plain autograd ops: ``sign(W) · relu(|W| − g(s))``."""
    return torch.sign(weight) * torch.relu(torch.abs(weight) - g(s))


def _sum_to_shape(x: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``x`` over the dimensions that ``shape`` was broadcast along (undo broadcasting)."""
    lead = x.dim() - len(shape)
    dims = list(range(lead)) + [
        lead + d for d, size in enumerate(shape) if size == 1 and x.shape[lead + d] != 1
    ]
    if dims:
        x = x.sum(dim=dims, keepdim=True)
    return x.reshape(shape)


class _SoftThreshold(torch.autograd.Function):
    """Ŵ = W − clamp(W, −t, t); saves Ŵ only (see module docstring)."""

    @staticmethod
    def forward(weight: Tensor, t: Tensor) -> Tensor:
        # t: scalar or broadcastable to weight (per output channel: (out, 1, ..., 1))
        return weight - torch.clamp(weight, -t, t)

    @staticmethod
    def setup_context(
        ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor, Tensor], output: Tensor
    ) -> None:
        t = inputs[1]
        ctx.save_for_backward(output)
        ctx.t_shape = t.shape  # type: ignore[attr-defined]

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor]:
        (sparse,) = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_weight = grad * (sparse != 0)
        signed = grad * torch.sign(sparse)
        t_shape: torch.Size = ctx.t_shape  # type: ignore[attr-defined]
        grad_t = -_sum_to_shape(signed, t_shape)
        return grad_weight, grad_t


def soft_threshold(weight: Tensor, s: Tensor, g: ThresholdFn = torch.sigmoid) -> Tensor:
    """STR's sparse weight ``sign(W) · relu(|W| − g(s))`` with a memory-lean backward.

    Args:
        weight: the dense weight W, any shape.
        s: threshold parameter; a scalar, or shaped ``(out, 1, ..., 1)`` for per-channel
            thresholds (broadcast against ``weight``).
        g: threshold function.

    Returns:
        Ŵ, the same shape as ``weight``; gradients reach both ``weight`` and ``s``.
    """
    t = g(s).to(weight.dtype)
    out: Tensor = _SoftThreshold.apply(weight, t)  # type: ignore[no-untyped-call]
    return out
