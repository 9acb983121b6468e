"""Small models for the built-in datasets: scikit-learn's 8x8 digits and MNIST-1D.

They train in seconds on a CPU, which makes them the models of tests, demos and quick searches.
Convs are bias-free and followed by BN and ReLU; module names are ``features.{i}.conv`` /
``.bn`` / ``.relu`` for conv stacks, ``classifier.{i}`` for MLP layers, and ``fc`` for the last
linear layer of the CNNs.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import torch
from torch import Tensor, nn

from str_core.models._registry import register_model


def _conv_bn_relu(conv: nn.Conv1d | nn.Conv2d) -> nn.Sequential:
    bn: nn.Module = (
        nn.BatchNorm1d(conv.out_channels)
        if isinstance(conv, nn.Conv1d)
        else nn.BatchNorm2d(conv.out_channels)
    )
    return nn.Sequential(OrderedDict(conv=conv, bn=bn, relu=nn.ReLU(inplace=True)))


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Flatten, then Linear + ReLU between consecutive sizes (no ReLU after the last)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """Three 3x3 convs (32, 64, 128 channels; a 2x2 max-pool after the second), global average
    pool and ``fc``: 93,728 prunable weights.

    Args:
        num_classes: outputs of ``fc``.
        in_channels: input channels.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)),
            _conv_bn_relu(nn.Conv2d(32, 64, 3, padding=1, bias=False)),
            nn.MaxPool2d(2),
            _conv_bn_relu(nn.Conv2d(64, 128, 3, padding=1, bias=False)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, 8, 8) -> (B, 128, 4, 4) -> logits (B, num_classes)
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(x)  # type: ignore[no-any-return]


class MNIST1DCNN(nn.Module):
    """Conv1d stack (32, 64, 64 channels, kernel 5; the last two stride 2), flatten, ``fc``.

    The classifier sees the flattened feature map, keeping the positions MNIST-1D's classes
    depend on; it therefore needs the input ``length`` (40 for MNIST-1D): 37,280 prunable weights.

    Args:
        num_classes: outputs of ``fc``.
        in_channels: input channels.
        length: input sequence length.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, length: int = 40) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(nn.Conv1d(in_channels, 32, 5, padding=2, bias=False)),
            _conv_bn_relu(nn.Conv1d(32, 64, 5, stride=2, padding=2, bias=False)),
            _conv_bn_relu(nn.Conv1d(64, 64, 5, stride=2, padding=2, bias=False)),
        )
        out_length = (length + 1) // 2
        out_length = (out_length + 1) // 2
        self.fc = nn.Linear(64 * out_length, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, L) -> (B, 64, ceil(L/4)) -> logits (B, num_classes)
        x = torch.flatten(self.features(x), 1)
        return self.fc(x)  # type: ignore[no-any-return]


@register_model(input_shape=(1, 8, 8), num_classes=10)
def digits_cnn(*, num_classes: int = 10, in_channels: int = 1) -> DigitsCNN:
    """Small CNN with BN for scikit-learn's 8x8 digits (93,728 prunable weights)."""
    return DigitsCNN(num_classes=num_classes, in_channels=in_channels)


@register_model(input_shape=(1, 8, 8), num_classes=10)
def digits_mlp(*, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """MLP 64-256-128-10 for scikit-learn's 8x8 digits."""
    return nn.Sequential(OrderedDict(classifier=_mlp([in_channels * 64, 256, 128, num_classes])))


@register_model(input_shape=(1, 40), num_classes=10)
def mnist1d_cnn(*, num_classes: int = 10, in_channels: int = 1, length: int = 40) -> MNIST1DCNN:
    """Conv1d CNN with BN for MNIST-1D (37,280 prunable weights)."""
    return MNIST1DCNN(num_classes=num_classes, in_channels=in_channels, length=length)


@register_model(input_shape=(1, 40), num_classes=10)
def mnist1d_mlp(*, num_classes: int = 10, in_channels: int = 1, length: int = 40) -> nn.Sequential:
    """MLP 40-256-256-10 for MNIST-1D."""
    return nn.Sequential(
        OrderedDict(classifier=_mlp([in_channels * length, 256, 256, num_classes]))
    )
