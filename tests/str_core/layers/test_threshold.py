"""soft_threshold: equivalence with the reference formula, gradients, properties, registry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from str_core.layers.threshold import (
    THRESHOLD_FUNCTIONS,
    get_threshold_fn,
    register_threshold_fn,
    soft_threshold,
    soft_threshold_reference,
    threshold_fn_name,
)

SHAPES = [(7,), (5, 6), (4, 3, 3, 3), (6, 1, 3, 3)]


def _weight(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("g_name", sorted(THRESHOLD_FUNCTIONS))
@pytest.mark.parametrize("per_channel", [False, True])
def test_gradients_equal_reference_formulation(
    shape: tuple[int, ...], g_name: str, per_channel: bool
) -> None:
    g = get_threshold_fn(g_name)
    w = _weight(shape)
    s_shape = (shape[0],) + (1,) * (len(shape) - 1) if per_channel else ()
    s0 = torch.linspace(-2.5, -1.0, shape[0], dtype=torch.float64).reshape(s_shape or (shape[0],))
    s_val = s0 if per_channel else torch.tensor(-1.5, dtype=torch.float64)
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    grads = []
    for fn in (soft_threshold, soft_threshold_reference):
        w_ = w.clone().requires_grad_(True)
        s_ = s_val.clone().requires_grad_(True)
        out = fn(w_, s_, g)
        (out * upstream).sum().backward()
        assert w_.grad is not None and s_.grad is not None
        grads.append((out.detach(), w_.grad, s_.grad))

    (out_a, gw_a, gs_a), (out_b, gw_b, gs_b) = grads
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-15)
    torch.testing.assert_close(gw_a, gw_b, rtol=0, atol=1e-15)
    torch.testing.assert_close(gs_a, gs_b, rtol=1e-12, atol=1e-12)
    assert gs_a.shape == s_val.shape


@pytest.mark.parametrize("per_channel", [False, True])
def test_gradcheck(per_channel: bool) -> None:
    w = _weight((4, 3, 2, 2)).requires_grad_(True)
    s = torch.full((4, 1, 1, 1) if per_channel else (), -1.2, dtype=torch.float64)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(soft_threshold, (w, s))


def test_pruned_weights_get_no_loss_gradient() -> None:
    w = torch.tensor([0.5, -0.05, 0.01, -0.8], requires_grad=True)
    s = torch.tensor(math.log(0.1 / 0.9), requires_grad=True)  # sigmoid(s) = 0.1
    out = soft_threshold(w, s)
    torch.testing.assert_close(out.detach(), torch.tensor([0.4, 0.0, 0.0, -0.7]))
    out.sum().backward()
    assert w.grad is not None and s.grad is not None
    assert w.grad.tolist() == [1.0, 0.0, 0.0, 1.0]
    # ∂/∂s of Σ Ŵ = −g′(s) Σ sign(W)·1[|W| > g(s)] = −0.09 · (1 − 1) = 0
    assert abs(s.grad.item()) < 1e-7


def _saved_for_backward(fn, w: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, list[int]]:  # type: ignore[no-untyped-def]
    """Run ``fn`` and return its output and the numel of every tensor autograd packed."""
    packed: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(w, s)
    big = [t for t in packed if t.numel() == w.numel()]
    assert all(t.numel() <= 1 for t in packed if t.numel() != w.numel())
    return out, [t.data_ptr() for t in big]


def test_saves_only_the_weight_parameter_and_threshold() -> None:
    w = torch.randn(16, 8, requires_grad=True)
    s = torch.tensor(-2.0, requires_grad=True)
    _, ptrs = _saved_for_backward(soft_threshold, w, s)
    assert ptrs == [w.data_ptr()]  # the parameter itself: no new weight-sized tensor
    _, ref_ptrs = _saved_for_backward(soft_threshold_reference, w, s)
    assert len(set(ref_ptrs) - {w.data_ptr()}) >= 2  # plain autograd keeps new intermediates


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.floats(-10, 10, allow_nan=False, allow_subnormal=False), min_size=1, max_size=40
    ),
    s=st.floats(-8, 3),
    g_name=st.sampled_from(sorted(THRESHOLD_FUNCTIONS)),
)
def test_properties_sign_kept_and_magnitude_shrinks(
    values: list[float], s: float, g_name: str
) -> None:
    w = torch.tensor(values, dtype=torch.float64)
    out = soft_threshold(w, torch.tensor(s, dtype=torch.float64), get_threshold_fn(g_name))
    nonzero = out != 0
    assert torch.all(torch.sign(out[nonzero]) == torch.sign(w[nonzero]))
    assert torch.all(out.abs() <= w.abs())
    assert torch.all(
        out.abs()
        == torch.clamp(
            w.abs() - get_threshold_fn(g_name)(torch.tensor(s, dtype=torch.float64)), min=0
        )
    )


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=40),
    s_low=st.floats(-8, 2),
    delta=st.floats(0, 4),
    g_name=st.sampled_from(sorted(THRESHOLD_FUNCTIONS)),
)
def test_sparsity_non_decreasing_in_s(
    values: list[float], s_low: float, delta: float, g_name: str
) -> None:
    w = torch.tensor(values, dtype=torch.float64)
    g = get_threshold_fn(g_name)
    low = soft_threshold(w, torch.tensor(s_low, dtype=torch.float64), g)
    high = soft_threshold(w, torch.tensor(s_low + delta, dtype=torch.float64), g)
    assert int((high == 0).sum()) >= int((low == 0).sum())
    # every weight pruned at the lower threshold stays pruned at the higher one
    assert torch.all(high[low == 0] == 0)


def test_very_negative_s_is_identity() -> None:
    w = _weight((3, 4))
    out = soft_threshold(w, torch.tensor(-3200.0, dtype=torch.float64))
    torch.testing.assert_close(out, w, rtol=0, atol=0)


def test_registry() -> None:
    assert {"sigmoid", "exp"} <= set(THRESHOLD_FUNCTIONS)
    assert get_threshold_fn("sigmoid") is torch.sigmoid
    assert threshold_fn_name(torch.exp) == "exp"
    with pytest.raises(KeyError, match="valid: exp, sigmoid"):
        get_threshold_fn("tanh")
    with pytest.raises(ValueError, match="already registered"):
        register_threshold_fn("sigmoid", torch.sigmoid)

    def custom(s: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(s)

    assert get_threshold_fn(custom) is custom
    assert threshold_fn_name(custom).endswith("custom")


@pytest.mark.parametrize("fused", [True, False])
def test_fused_and_generic_paths_agree_with_the_reference(
    fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The single-pass CPU kernels and the generic form (used on accelerators) are both exact."""
    from str_core.layers import threshold

    monkeypatch.setattr(threshold, "_fused_scalar", lambda weight, t: fused)
    w = _weight((6, 3, 3, 3))
    upstream = torch.randn(w.shape, generator=torch.Generator().manual_seed(2), dtype=w.dtype)
    grads = []
    for fn in (soft_threshold, soft_threshold_reference):
        w_ = w.clone().requires_grad_(True)
        s_ = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
        out = fn(w_, s_, torch.sigmoid)
        (out * upstream).sum().backward()
        grads.append((out.detach(), w_.grad, s_.grad))
    for got, want in zip(grads[0], grads[1], strict=True):
        assert got is not None and want is not None
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
