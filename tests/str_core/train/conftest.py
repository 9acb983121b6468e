"""Small real-data fixtures for trainer tests."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from str_core.data import DatasetSplits


def make_blobs() -> DatasetSplits:
    """A tiny separable 3-class problem (shape (1, 4, 4)): 64 train, 16 val, 16 test examples."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 3
    x = torch.randn(96, 1, 4, 4, generator=gen) * 0.5 + y.view(-1, 1, 1, 1).float()
    train = TensorDataset(x[:64], y[:64])
    val = TensorDataset(x[64:80], y[64:80])
    test = TensorDataset(x[80:], y[80:])
    return DatasetSplits("blobs", train, val, test, num_classes=3, input_shape=(1, 4, 4))


@pytest.fixture
def blobs() -> DatasetSplits:
    """A tiny separable 3-class problem (shape (1, 4, 4)) for fast mechanical tests."""
    return make_blobs()


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()
