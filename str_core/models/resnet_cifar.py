"""ResNet-20 for CIFAR-10 (He et al., CVPR 2016, section 4.2).

A 3x3 conv to 16 channels, three stages of three basic blocks with 16, 32 and 64 channels (the
second and third stages halve the resolution), global average pool and a linear classifier.

Shortcut choice: the paper's CIFAR networks use parameter-free shortcuts (option A: stride and
zero-pad the channels). Here a shortcut that changes the shape is a 1x1 conv + BN projection
(option B), so every shortcut is a prunable conv like in the ImageNet ResNets and sparsity is
counted the same way. It adds 2 prunable layers and 2,560 weights (272,474 parameters in all).
Module names follow torchvision's ResNets: ``conv1``, ``layer1.0.conv1``, ...,
``layer2.0.downsample.0``, ``fc``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from str_core.models._init import init_conv_bn_
from str_core.models._registry import register_model
from str_core.models.resnet import BasicBlock


class CifarResNet(nn.Module):
    """The 6n+2-layer CIFAR ResNet (n = 3 gives ResNet-20).

    Args:
        blocks_per_stage: ``n``, basic blocks in each of the three stages.
        num_classes: outputs of ``fc``.
        in_channels: input channels of ``conv1``.
    """

    def __init__(
        self, blocks_per_stage: int, *, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        in_ch = 16
        stages: list[nn.Sequential] = []
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            downsample = None
            if stride != 1 or in_ch != width:
                downsample = nn.Sequential(
                    nn.Conv2d(in_ch, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
                )
            blocks = [BasicBlock(in_ch, width, stride, downsample)]
            blocks += [BasicBlock(width, width) for _ in range(1, blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            in_ch = width
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_conv_bn_(self)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, 32, 32) -> (B, 64, 8, 8) -> logits (B, num_classes)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)  # type: ignore[no-any-return]


@register_model(input_shape=(3, 32, 32), num_classes=10)
def resnet20(*, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-20 for CIFAR-10 (16/32/64 channels, 1x1 conv projection shortcuts)."""
    return CifarResNet(3, num_classes=num_classes, in_channels=in_channels)
