"""STR versions of ``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Linear`` (STR, arXiv 2002.03231).

Each layer keeps its dense weight ``W`` and a learnable threshold parameter ``s`` and computes with
``Ŵ = sign(W) · relu(|W| − g(s))``. Everything is set through the constructor (no global state);
``from_dense`` / ``to_dense`` convert explicitly to and from plain layers.
"""

from __future__ import annotations

from typing import Any, Self

import torch
from torch import Tensor, nn

from str_core.config import Granularity
from str_core.layers.threshold import (
    ThresholdFn,
    get_threshold_fn,
    recompute_in_backward,
    soft_threshold,
    sparse_weight_value,
    threshold_fn_name,
)


class STRMixin:
    """Threshold state and the sparse weight shared by the STR layers.

    Attributes:
        s: threshold parameter; shape ``()`` for one threshold per layer or ``(out, 1, ...)`` with
            one per output channel.
        g: the threshold function.
        granularity: ``"layer"`` or ``"channel"``.
    """

    weight: Tensor
    s: nn.Parameter
    g: ThresholdFn
    granularity: Granularity

    def _init_threshold(
        self, s_init: float, threshold_fn: str | ThresholdFn, granularity: Granularity
    ) -> None:
        if granularity not in ("layer", "channel"):
            raise ValueError(f"granularity must be 'layer' or 'channel', got {granularity!r}")
        self.g = get_threshold_fn(threshold_fn)
        self.granularity = granularity
        w = self.weight
        shape: tuple[int, ...] = ()
        if granularity == "channel":
            shape = (w.shape[0],) + (1,) * (w.dim() - 1)
        self.s = nn.Parameter(torch.full(shape, float(s_init), device=w.device, dtype=w.dtype))

    def sparse_weight(self) -> Tensor:
        """Ŵ: the thresholded weight the layer computes with (differentiable)."""
        return soft_threshold(self.weight, self.s, self.g)

    def _rebuild_sparse_weight(self) -> Tensor:
        return sparse_weight_value(self.weight, self.g(self.s).to(self.weight.dtype))

    @torch.no_grad()
    def threshold(self) -> Tensor:
        """The current threshold ``g(s)`` (detached)."""
        return self.g(self.s).detach()

    def _threshold_repr(self) -> str:
        return f"threshold_fn={threshold_fn_name(self.g)}, granularity={self.granularity}"


class _STRConvNd(STRMixin):
    """Shared STR conv behaviour; concrete classes also inherit from their ``nn.ConvNd``."""

    _dense_cls: type[nn.Conv1d] | type[nn.Conv2d]
    bias: Tensor | None

    def __init__(
        self,
        *args: Any,
        s_init: float = -5.0,
        threshold_fn: str | ThresholdFn = "sigmoid",
        granularity: Granularity = "layer",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_threshold(s_init, threshold_fn, granularity)

    def forward(self, x: Tensor) -> Tensor:
        w_hat = self.sparse_weight()
        with recompute_in_backward(w_hat, self._rebuild_sparse_weight):
            out: Tensor = self._conv_forward(x, w_hat, self.bias)  # type: ignore[attr-defined]
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._threshold_repr()}"  # type: ignore[misc]

    @staticmethod
    def _conv_kwargs(conv: nn.Conv1d | nn.Conv2d) -> dict[str, Any]:
        return {
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
            "kernel_size": conv.kernel_size,
            "stride": conv.stride,
            "padding": conv.padding,
            "dilation": conv.dilation,
            "groups": conv.groups,
            "bias": conv.bias is not None,
            "padding_mode": conv.padding_mode,
            "device": conv.weight.device,
            "dtype": conv.weight.dtype,
        }

    @classmethod
    def from_dense(
        cls,
        conv: nn.Conv1d | nn.Conv2d,
        *,
        s_init: float = -5.0,
        threshold_fn: str | ThresholdFn = "sigmoid",
        granularity: Granularity = "layer",
    ) -> Self:
        """An STR layer with ``conv``'s hyper-parameters and a copy of its weight and bias.

        Raises:
            TypeError: if ``conv`` is not of this class's dense type.
        """
        if not isinstance(conv, cls._dense_cls):
            raise TypeError(f"{cls.__name__}.from_dense expects {cls._dense_cls.__name__}")
        layer = cls(
            **cls._conv_kwargs(conv),
            s_init=s_init,
            threshold_fn=threshold_fn,
            granularity=granularity,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None and layer.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer

    @torch.no_grad()
    def to_dense(self) -> nn.Conv1d | nn.Conv2d:
        """A plain conv of the dense type whose weight is the thresholded weight Ŵ."""
        conv = self._dense_cls(**self._conv_kwargs(self))  # type: ignore[arg-type]
        conv.weight.copy_(self.sparse_weight())
        if self.bias is not None and conv.bias is not None:
            conv.bias.copy_(self.bias)
        return conv


class STRConv2d(_STRConvNd, nn.Conv2d):
    """``nn.Conv2d`` with a soft-thresholded weight (grouped and depthwise too).

    Takes ``nn.Conv2d``'s arguments plus the keyword-only ``s_init``, ``threshold_fn`` (``g``, by
    registered name or as a callable) and ``granularity`` (``"layer"`` or ``"channel"``).
    """

    _dense_cls = nn.Conv2d


class STRConv1d(_STRConvNd, nn.Conv1d):
    """``nn.Conv1d`` with a soft-thresholded weight; arguments as for :class:`STRConv2d`."""

    _dense_cls = nn.Conv1d


class STRLinear(STRMixin, nn.Linear):
    """``nn.Linear`` with a soft-thresholded weight.

    Args:
        in_features: as for ``nn.Linear``.
        out_features: as for ``nn.Linear``.
        bias: as for ``nn.Linear``.
        s_init: initial threshold parameter.
        threshold_fn: ``g``, by registered name or as a callable.
        granularity: ``"layer"`` or ``"channel"`` (one threshold per output feature).
        device: as for ``nn.Linear``.
        dtype: as for ``nn.Linear``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        s_init: float = -5.0,
        threshold_fn: str | ThresholdFn = "sigmoid",
        granularity: Granularity = "layer",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_threshold(s_init, threshold_fn, granularity)

    def forward(self, x: Tensor) -> Tensor:
        w_hat = self.sparse_weight()
        with recompute_in_backward(w_hat, self._rebuild_sparse_weight):
            return nn.functional.linear(x, w_hat, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._threshold_repr()}"

    @classmethod
    def from_dense(
        cls,
        linear: nn.Linear,
        *,
        s_init: float = -5.0,
        threshold_fn: str | ThresholdFn = "sigmoid",
        granularity: Granularity = "layer",
    ) -> Self:
        """An STR layer with ``linear``'s shape and a copy of its weight and bias."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            s_init=s_init,
            threshold_fn=threshold_fn,
            granularity=granularity,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    @torch.no_grad()
    def to_dense(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight is the thresholded weight Ŵ."""
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        linear.weight.copy_(self.sparse_weight())
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear


STR_LAYER_TYPES: tuple[type[nn.Module], ...] = (STRConv1d, STRConv2d, STRLinear)
"""Every STR layer class; ``isinstance(m, STR_LAYER_TYPES)`` finds them in a model."""
