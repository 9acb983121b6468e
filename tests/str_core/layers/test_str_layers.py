"""STR layers: equivalence with dense layers, conversions, granularity, dtype/device handling."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from str_core.layers import STRConv1d, STRConv2d, STRLinear, soft_threshold_reference


def _dense_layers() -> list[nn.Module]:
    torch.manual_seed(0)
    return [
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, stride=2, groups=8, bias=False),  # depthwise
        nn.Conv2d(8, 12, (1, 3), groups=4, dilation=2),  # grouped, dilated
        nn.Conv1d(2, 6, 5, padding=2),
        nn.Linear(10, 4),
        nn.Linear(10, 4, bias=False),
    ]


def _input_for(layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return torch.randn(5, layer.in_features)
    if isinstance(layer, nn.Conv1d):
        return torch.randn(2, layer.in_channels, 11)
    assert isinstance(layer, nn.Conv2d)
    return torch.randn(2, layer.in_channels, 9, 9)


def _str_cls(layer: nn.Module) -> type[STRConv1d] | type[STRConv2d] | type[STRLinear]:
    if isinstance(layer, nn.Conv1d):
        return STRConv1d
    return STRConv2d if isinstance(layer, nn.Conv2d) else STRLinear


@pytest.mark.parametrize("dense", _dense_layers(), ids=repr)
def test_s_to_minus_infinity_matches_dense(dense: nn.Module) -> None:
    layer = _str_cls(dense).from_dense(dense, s_init=-1e4)  # type: ignore[arg-type]
    x = _input_for(dense)
    torch.testing.assert_close(layer(x), dense(x), rtol=0, atol=0)


@pytest.mark.parametrize("dense", _dense_layers(), ids=repr)
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_to_dense_bakes_in_the_thresholded_weight(dense: nn.Module, granularity: str) -> None:
    layer = _str_cls(dense).from_dense(dense, s_init=-1.5, granularity=granularity)  # type: ignore[arg-type]
    if granularity == "channel":
        with torch.no_grad():  # different thresholds per output channel
            layer.s.copy_(torch.linspace(-3, -1, layer.s.shape[0]).reshape(layer.s.shape))
    plain = layer.to_dense()
    assert type(plain) is type(dense)
    expected = soft_threshold_reference(layer.weight, layer.s, layer.g).detach()
    torch.testing.assert_close(plain.weight, expected, rtol=0, atol=0)
    assert 0 < float((plain.weight == 0).float().mean()) < 1
    x = _input_for(dense)
    torch.testing.assert_close(plain(x), layer(x))


def _graph_holds_sparse_weight(layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether the autograd graph of ``layer(x)`` keeps Ŵ (or a view of it) alive."""
    stash: list[torch.Tensor] = []
    original = layer.sparse_weight  # type: ignore[operator]

    def capture() -> torch.Tensor:
        w = original()
        stash.append(w)
        return w

    layer.sparse_weight = capture  # type: ignore[method-assign]
    out = layer(x)
    w_hat = stash.pop()
    ref = weakref.ref(w_hat)
    # storage references: our `w_hat` and the temporary storage object; a saved view adds one
    extra_refs = torch._C._storage_Use_Count(w_hat.untyped_storage()._cdata) - 2
    del w_hat
    gc.collect()
    held = ref() is not None or extra_refs > 0
    out.sum().backward()
    del layer.sparse_weight  # back to the class's method
    return held


@pytest.mark.parametrize("dense", _dense_layers(), ids=repr)
def test_autograd_graph_does_not_keep_the_sparse_weight(dense: nn.Module) -> None:
    layer = _str_cls(dense).from_dense(dense, s_init=-1.5)  # type: ignore[arg-type]
    x = _input_for(dense).requires_grad_(True)
    assert not _graph_holds_sparse_weight(layer, x)
    if isinstance(dense, nn.Linear):
        assert not _graph_holds_sparse_weight(layer, torch.randn(2, 3, 10, requires_grad=True))


@pytest.mark.parametrize("dense", _dense_layers(), ids=repr)
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_layer_gradients_equal_the_reference_formula(dense: nn.Module, granularity: str) -> None:
    dense = dense.double()
    layer = _str_cls(dense).from_dense(dense, s_init=-1.5, granularity=granularity)  # type: ignore[arg-type]
    x = _input_for(dense).double().requires_grad_(True)
    upstream = torch.randn_like(layer(x))
    (layer(x) * upstream).sum().backward()
    lean = [x.grad, layer.weight.grad, layer.s.grad]
    x.grad = layer.weight.grad = layer.s.grad = None
    w_hat = soft_threshold_reference(layer.weight, layer.s, layer.g)
    if isinstance(layer, nn.Linear):
        ref_out = nn.functional.linear(x, w_hat, layer.bias)
    else:
        ref_out = layer._conv_forward(x, w_hat, layer.bias)  # type: ignore[operator]
    (ref_out * upstream).sum().backward()
    for got, want in zip(lean, [x.grad, layer.weight.grad, layer.s.grad], strict=True):
        assert got is not None and want is not None
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_channel_granularity_shapes_and_gradients() -> None:
    conv = STRConv2d(4, 6, 3, s_init=-2.0, granularity="channel")
    lin = STRLinear(5, 3, s_init=-2.0, granularity="channel")
    assert conv.s.shape == (6, 1, 1, 1)
    assert lin.s.shape == (3, 1)
    conv(torch.randn(2, 4, 5, 5)).sum().backward()
    lin(torch.randn(2, 5)).sum().backward()
    assert conv.s.grad is not None and conv.s.grad.shape == conv.s.shape
    assert lin.s.grad is not None and lin.s.grad.shape == lin.s.shape
    assert conv.threshold().shape == conv.s.shape


def test_layer_threshold_is_a_scalar_parameter() -> None:
    layer = STRLinear(4, 2, s_init=0.0, threshold_fn="exp")
    assert layer.s.shape == ()
    assert layer.threshold().item() == pytest.approx(1.0)
    assert "threshold_fn=exp" in repr(layer)
    assert dict(layer.named_parameters()).keys() == {"weight", "bias", "s"}


def test_float64_and_state_dict_round_trip() -> None:
    dense = nn.Conv2d(2, 3, 3, dtype=torch.float64)
    layer = STRConv2d.from_dense(dense, s_init=-3.0)
    assert layer.weight.dtype == torch.float64 and layer.s.dtype == torch.float64
    other = STRConv2d(2, 3, 3, dtype=torch.float64)
    other.load_state_dict(layer.state_dict())
    assert other.s.item() == -3.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="granularity"):
        STRLinear(3, 3, granularity="row")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown threshold function"):
        STRLinear(3, 3, threshold_fn="nope")
    with pytest.raises(TypeError, match="expects Conv2d"):
        STRConv2d.from_dense(nn.Conv1d(1, 1, 1))  # type: ignore[arg-type]
