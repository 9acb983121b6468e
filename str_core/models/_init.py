"""Weight initialisation shared by the convolutional models."""

from __future__ import annotations

from torch import nn


def init_conv_bn_(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) for every Conv1d/Conv2d; BN gamma 1 and beta 0.

    Linear layers keep PyTorch's default init.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
