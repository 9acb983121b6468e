"""A trainer callback that draws progress bars and one summary line per epoch."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from str_core.train import Callback, EpochMetrics, Trainer


class RichProgress(Callback):
    """Overall epoch bar plus a step bar for the running epoch; a line per finished epoch."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
        )
        self._epochs: TaskID | None = None
        self._steps: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def on_train_start(self, trainer: Trainer) -> None:
        self._epochs = self.progress.add_task(
            "epochs", total=trainer.cfg.epochs, completed=trainer.epoch, info=""
        )
        self._steps = self.progress.add_task("steps", total=trainer.steps_per_epoch, info="")

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        if self._steps is not None:
            self.progress.update(self._steps, completed=step, info=f"loss {loss:.3f}")

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        s = metrics.scalars
        acc_key = "val_acc" if "val_acc" in s else "test_acc"
        line = (
            f"epoch {metrics.epoch:>3}/{trainer.cfg.epochs}  loss {s['train_loss']:.4f}  "
            f"{acc_key} {s[acc_key]:.2%}  sparsity {s['sparsity']:.2%}  "
            f"MACs {s['flops'] / 1e6:.3g}M  ({s['epoch_seconds']:.1f}s)"
        )
        self.console.print(line, highlight=False)
        if self._epochs is not None and self._steps is not None:
            self.progress.update(
                self._epochs, completed=metrics.epoch, info=f"sparsity {s['sparsity']:.1%}"
            )
            self.progress.reset(self._steps, total=trainer.steps_per_epoch)
