"""Small models and a real-data training helper for the pruning tests."""

from __future__ import annotations

import torch
from torch import nn

from str_core.config import DataConfig, PruneConfig, TrainConfig
from str_core.metrics import per_layer_stats
from str_core.pruning import pruning_callbacks
from str_core.train import Callback, Trainer, TrainResult, build_run

DIGITS = DataConfig(name="digits")
# digits_mlp: 11 steps per epoch at batch 128, 3 epochs in a fraction of a second
FAST = TrainConfig(epochs=3, batch_size=128, lr=0.1, seed=0)


class SmallNet(nn.Module):
    """A conv, a BN and two linear layers on (1, 4, 4) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 16, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x))).flatten(1)  # (N, 64)
        return self.fc2(torch.relu(self.fc1(h)))  # type: ignore[no-any-return]


def small_net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet()


def layer_sparsities(model: nn.Module) -> dict[str, float]:
    return {name: s.sparsity for name, s in per_layer_stats(model).items()}


def train_pruned(
    prune: PruneConfig,
    *,
    model: str = "digits_mlp",
    cfg: TrainConfig = FAST,
    callbacks: tuple[Callback, ...] = (),
    checkpoint_dir: str | None = None,
    resume: bool = False,
) -> tuple[nn.Module, TrainResult]:
    """Build ``model`` with masks for ``prune`` and train it on digits with the real trainer."""
    run = build_run(model, DIGITS, cfg, None, prune=prune)
    trainer = Trainer(
        run.model,
        cfg,
        run.data,
        callbacks=[*pruning_callbacks(prune), *callbacks],
        checkpoint_dir=checkpoint_dir,
    )
    return run.model, trainer.fit(resume=resume)
