"""ResNet-18 and ResNet-50 with torchvision's architecture and module names.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), as torchvision builds it
("v1.5": the Bottleneck strides on its 3x3 conv). Module names match torchvision's exactly
(``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer1.0.downsample.0``, ``fc``), so per-layer
budgets published for STR (arXiv 2002.03231) apply by name. Dense ResNet-50 has 54 prunable layers
with 25,502,912 weights.

The ``*_cifar`` variants keep every module and name but use a 3x3, stride-1 stem and no max-pool
(``maxpool`` is ``nn.Identity``), the usual adaptation for 32x32 inputs.

All layers are plain ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d``; STR comes from
``create_model(..., str_config=...)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from str_core.models._init import init_conv_bn_
from str_core.models._registry import register_model


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut; ``downsample`` (1x1 conv + BN) when the shape changes."""

    expansion: ClassVar[int] = 1

    def __init__(
        self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN whose gamma ``zero_init_residual`` zeroes."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, in_ch, H, W) -> (B, width, H/stride, W/stride)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)  # type: ignore[no-any-return]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, torchvision v1.5), 1x1 expand by 4, and a shortcut."""

    expansion: ClassVar[int] = 4

    def __init__(
        self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN whose gamma ``zero_init_residual`` zeroes."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, in_ch, H, W) -> (B, 4 * width, H/stride, W/stride)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity
        return self.relu(out)  # type: ignore[no-any-return]


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A torchvision-layout ResNet: stem, four stages ``layer1``..``layer4``, pool, ``fc``.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50.
        num_classes: outputs of ``fc``.
        in_channels: input channels of ``conv1``.
        zero_init_residual: start every block's last BN gamma at 0 (each block then starts as
            the identity).
        cifar_stem: 3x3 stride-1 ``conv1`` and no max-pool, for 32x32 inputs.
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        zero_init_residual: bool = False,
        cifar_stem: bool = False,
    ) -> None:
        super().__init__()
        self._in_ch = 64
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.Identity() if cifar_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_weights(self, zero_init_residual)

    def _make_stage(self, block: Block, width: int, blocks: int, stride: int) -> nn.Sequential:
        out_ch = width * block.expansion
        downsample = None
        if stride != 1 or self._in_ch != out_ch:
            downsample = nn.Sequential(
                _conv1x1(self._in_ch, out_ch, stride), nn.BatchNorm2d(out_ch)
            )
        stage: list[nn.Module] = [block(self._in_ch, width, stride, downsample)]
        self._in_ch = out_ch
        stage += [block(out_ch, width) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, H, W) -> logits (B, num_classes); any H, W thanks to the adaptive pool
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512 * expansion)
        return self.fc(x)  # type: ignore[no-any-return]


def _init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """Kaiming-normal (fan_out, ReLU) convs, BN gamma 1 / beta 0; ``fc`` keeps PyTorch's init."""
    init_conv_bn_(model)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, BasicBlock | Bottleneck):
                nn.init.zeros_(m.last_bn().weight)


@register_model(input_shape=(3, 224, 224), num_classes=1000)
def resnet18(
    *, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18 for ImageNet (torchvision layout; 21 prunable layers, 11,678,912 weights)."""
    return ResNet(
        BasicBlock,
        [2, 2, 2, 2],
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
    )


@register_model(input_shape=(3, 224, 224), num_classes=1000)
def resnet50(
    *, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50 v1.5 for ImageNet (torchvision layout; 54 prunable layers, 25,502,912 weights)."""
    return ResNet(
        Bottleneck,
        [3, 4, 6, 3],
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
    )


@register_model(input_shape=(3, 32, 32), num_classes=10)
def resnet18_cifar(
    *, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool, for 32x32 images."""
    return ResNet(
        BasicBlock,
        [2, 2, 2, 2],
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
        cifar_stem=True,
    )


@register_model(input_shape=(3, 32, 32), num_classes=10)
def resnet50_cifar(
    *, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50 with a 3x3 stride-1 stem and no max-pool, for 32x32 images."""
    return ResNet(
        Bottleneck,
        [3, 4, 6, 3],
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
        cifar_stem=True,
    )
