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
  ``W − clamp(W, −t, t)`` (equal to the formula; on the CPU with one threshold per layer, the
  single-pass ``softshrink`` kernel) and which saves only the dense weight W (a parameter, which
  exists anyway) and the small threshold t = g(s). Its backward rebuilds the mask:

      ∂L/∂W = ∇_Ŵ L ⊙ 1[|W| − t > 0]
      ∂L/∂t = −Σ ∇_Ŵ L ⊙ sign(W) ⊙ 1[|W| − t > 0]        (summed to the shape of t)

  and ``t = g(s)`` is an ordinary autograd op, so ∂L/∂s = g′(s) · ∂L/∂t comes for free.

The conv or matmul that consumes Ŵ would still keep Ŵ for its own backward: one weight-sized tensor
per layer held from forward to backward. :func:`recompute_in_backward` avoids that: inside it,
autograd stores a note instead of Ŵ and recomputes Ŵ from (W, s) when the backward needs it, so an
STR layer's autograd graph holds no more than a dense layer's (at the cost of one elementwise pass
over the weights per layer in backward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

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


def _fused_scalar(weight: Tensor, t: Tensor) -> bool:
    """One threshold for the whole layer, on the CPU: use the single-pass softshrink kernels.

    ``float(t)`` would force a device sync per layer on accelerators, so they keep the generic
    tensor form, which is exact everywhere.
    """
    return t.dim() == 0 and weight.device.type == "cpu"


def sparse_weight_value(weight: Tensor, t: Tensor) -> Tensor:
    """Ŵ = sign(W) · relu(|W| − t) without autograd (forward and the backward-time rebuild)."""
    if _fused_scalar(weight, t):
        return torch.nn.functional.softshrink(weight, float(t))
    # t: scalar or broadcastable to weight (per output channel: (out, 1, ..., 1))
    return weight - torch.clamp(weight, -t, t)


class _SoftThreshold(torch.autograd.Function):
    """Ŵ = sign(W) · relu(|W| − t); saves W and t only (see module docstring)."""

    @staticmethod
    def forward(weight: Tensor, t: Tensor) -> Tensor:
        return sparse_weight_value(weight, t)

    @staticmethod
    def setup_context(
        ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor, Tensor], output: Tensor
    ) -> None:
        weight, t = inputs
        ctx.save_for_backward(weight, t)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor]:
        weight, t = ctx.saved_tensors  # type: ignore[attr-defined]
        if _fused_scalar(weight, t):
            # one pass for the mask (|W| > t), one dot product for the threshold
            grad_weight = torch.ops.aten.softshrink_backward(grad, weight, float(t))
            grad_t = -torch.dot(grad_weight.reshape(-1), torch.sign(weight).reshape(-1))
            return grad_weight, grad_t.reshape(t.shape)
        kept = (weight.abs() - t) > 0  # same comparison as relu(|W| − t) in the formula
        grad_weight = grad * kept
        grad_t = -_sum_to_shape(grad_weight * torch.sign(weight), t.shape)
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


class _Recompute:
    """What autograd stores in place of Ŵ (or a view of it) inside :func:`recompute_in_backward`."""

    __slots__ = ("offset", "rebuild", "size", "stride")

    def __init__(self, rebuild: Callable[[], Tensor], saved: Tensor) -> None:
        self.rebuild = rebuild
        self.size, self.stride = saved.size(), saved.stride()
        self.offset = saved.storage_offset()

    def __call__(self) -> Tensor:
        # Ŵ is contiguous, so the saved view's geometry applies to the rebuilt tensor as well
        return self.rebuild().as_strided(self.size, self.stride, self.offset)


@contextlib.contextmanager
def recompute_in_backward(sparse: Tensor, rebuild: Callable[[], Tensor]) -> Iterator[None]:
    """Within the block, ops that save ``sparse`` (or a view of it, such as the transposed weight
    a matmul keeps) for backward store a recipe instead, and ``rebuild`` recreates it on demand.

    Args:
        sparse: Ŵ, as returned by :func:`soft_threshold` (contiguous; otherwise nothing changes).
        rebuild: returns a contiguous tensor equal to ``sparse``; called without grad during
            backward. It reads the weight and threshold as they are then, which is correct as long
            as they are not modified between forward and backward (optimizer steps come after).

    Every other saved tensor (the layer's input, for instance) is stored as usual.
    """
    if not (torch.is_grad_enabled() and sparse.is_contiguous()):
        yield
        return
    # the hooks outlive the block (autograd keeps them with what they packed): they must hold
    # plain values only, never ``sparse`` itself, or it would stay alive until backward
    storage = sparse.untyped_storage()
    ptr, nbytes, dtype = storage.data_ptr(), storage.nbytes(), sparse.dtype
    del storage

    def pack(saved: Tensor) -> Tensor | _Recompute:
        other = saved.untyped_storage()
        if other.data_ptr() == ptr and other.nbytes() == nbytes and saved.dtype == dtype:
            return _Recompute(rebuild, saved)
        return saved

    def unpack(packed: Tensor | _Recompute) -> Tensor:
        if isinstance(packed, _Recompute):
            with torch.no_grad():
                return packed()
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
