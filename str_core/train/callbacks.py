"""Trainer events. The trainer reports through callbacks and knows nothing of who listens.

A callback subclasses :class:`Callback` and overrides the events it needs. Adapters for Ray Tune,
MLflow or a progress bar live outside ``str_core`` and turn these events into their own calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from str_core.train.trainer import Trainer


@dataclass(frozen=True)
class LayerSnapshot:
    """One prunable layer at the end of an epoch."""

    sparsity: float
    threshold: float | None  # mean g(s) for STR layers, None for dense layers
    nonzero: int
    params: int


@dataclass(frozen=True)
class EpochMetrics:
    """Everything measured at the end of one epoch.

    Attributes:
        epoch: 1-based index of the finished epoch.
        scalars: ``train_loss``, ``train_acc``, ``lr``, ``val_loss``/``val_acc``/``val_top5`` (when
            there is a validation split), ``test_loss``/``test_acc``/``test_top5``, ``sparsity``,
            ``nonzero``, ``params``, ``flops`` (sparse MACs), ``dense_flops``, ``epoch_seconds``.
            Top-5 is reported only for more than five classes.
        layers: per-layer snapshot, keyed by module name, in module order.
    """

    epoch: int
    scalars: dict[str, float]
    layers: dict[str, LayerSnapshot] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """Scalars plus ``sparsity/<layer>`` and ``threshold/<layer>`` keys, for loggers."""
        out = dict(self.scalars)
        for name, layer in self.layers.items():
            out[f"sparsity/{name}"] = layer.sparsity
            if layer.threshold is not None:
                out[f"threshold/{name}"] = layer.threshold
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (also what checkpoints keep as history)."""
        return {
            "epoch": self.epoch,
            "scalars": dict(self.scalars),
            "layers": {
                n: {
                    "sparsity": s.sparsity,
                    "threshold": s.threshold,
                    "nonzero": s.nonzero,
                    "params": s.params,
                }
                for n, s in self.layers.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> EpochMetrics:
        """Inverse of :meth:`to_dict`."""
        layers = data.get("layers", {})
        assert isinstance(layers, dict)
        scalars = data["scalars"]
        assert isinstance(scalars, dict)
        epoch = data["epoch"]
        assert isinstance(epoch, int)
        return cls(
            epoch=epoch,
            scalars={str(k): float(v) for k, v in scalars.items()},
            layers={str(n): LayerSnapshot(**v) for n, v in layers.items()},
        )


class Callback:
    """Base class: every event is a no-op until overridden."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch that will run (after a resume, too)."""

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        """Called after every optimizer step; ``step`` counts from 1 within the epoch."""

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        """Called after each epoch's evaluation and checkpoint."""

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        """Called once after the last epoch."""
