"""MobileNetV1 (Howard et al., 2017, arXiv 1704.04861), as used in the STR paper (arXiv 2002.03231).

A 3x3 stride-2 conv to 32 channels, 13 depthwise-separable blocks, global average pool and a
linear classifier. Every conv is bias-free and followed by BN and ReLU. At width 1.0 there are 28
prunable layers with 4,209,088 weights (1,024,000 of them in ``fc``; the ``fc`` bias is not
counted).

Module names:

* ``features.0.conv`` / ``.bn`` / ``.relu``: the stem, 3x3 stride 2, ``in_channels`` -> 32;
* ``features.{i}.depthwise.conv`` (3x3, ``groups`` = channels, carries the stride) and
  ``features.{i}.pointwise.conv`` (1x1) for blocks ``i`` = 1..13, each with its ``.bn``/``.relu``;
* ``avgpool`` (``AdaptiveAvgPool2d(1)``) and ``fc``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from str_core.models._init import init_conv_bn_
from str_core.models._registry import register_model

# (output channels, stride) of the 13 depthwise-separable blocks at width 1.0
_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _conv_bn_relu(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
    return nn.Sequential(
        OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_ch), relu=nn.ReLU(inplace=True))
    )


class DepthwiseSeparable(nn.Module):
    """A 3x3 depthwise conv (with the stride) then a 1x1 pointwise conv, each with BN and ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn_relu(in_ch, in_ch, 3, stride, groups=in_ch)
        self.pointwise = _conv_bn_relu(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)
        return self.pointwise(self.depthwise(x))  # type: ignore[no-any-return]


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, round(channels * width_mult))


class MobileNetV1(nn.Module):
    """MobileNetV1; see the module docstring for layer names.

    Args:
        num_classes: outputs of ``fc``.
        in_channels: input channels of the stem.
        width_mult: the paper's width multiplier α; every channel count is ``round(α · c)``
            (at least 1).
    """

    def __init__(
        self, *, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        ch = _scaled(32, width_mult)
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, ch, 3, stride=2)]
        for out, stride in _BLOCKS:
            layers.append(DepthwiseSeparable(ch, _scaled(out, width_mult), stride))
            ch = _scaled(out, width_mult)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        init_conv_bn_(self)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, H, W) -> (B, 1024α, H/32, W/32) -> logits (B, num_classes)
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(x)  # type: ignore[no-any-return]


@register_model(input_shape=(3, 224, 224), num_classes=1000)
def mobilenet_v1(
    *, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0
) -> MobileNetV1:
    """MobileNetV1 for ImageNet (28 prunable layers, 4,209,088 weights at width 1.0)."""
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)
