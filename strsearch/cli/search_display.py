"""A live table of a search's trials and a progress bar, fed by trial events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


@dataclass(frozen=True)
class TrialRow:
    """One line of the trials table; ``state`` is shown as is (landed, above, running, ...)."""

    trial_id: str
    weight_decay: float
    s_init: float | None
    epoch: int
    sparsity: float | None
    val_acc: float | None
    state: str
    method: str | None = None


def trials_table(
    rows: Iterable[TrialRow], *, target: float, tolerance: float, epochs: int
) -> Table:
    """The live trials table of ``strsearch search`` and ``strsearch watch`` (with a method
    column when a comparison's trials are in it)."""
    rows = list(rows)
    methods = any(row.method not in (None, "str") for row in rows)
    table = Table(
        "trial", "λ", "s_init", "epoch", "sparsity", "val acc", "state",
        title=f"target {target:.2%} ± {tolerance:.2%}", header_style="bold",
    )  # fmt: skip
    if methods:
        table.add_column("method")
    for row in rows:
        cells = [
            row.trial_id,
            f"{row.weight_decay:.4g}",
            "" if row.s_init is None else f"{row.s_init:g}",
            f"{row.epoch}/{epochs}",
            "" if row.sparsity is None else f"{row.sparsity:.2%}",
            "" if row.val_acc is None else f"{row.val_acc:.2%}",
            row.state,
        ]
        table.add_row(*cells, *([row.method or "str"] if methods else []))
    return table


@dataclass
class _Row:
    weight_decay: float
    s_init: float | None
    method: str | None
    epoch: int = 0
    sparsity: float | None = None
    val_acc: float | None = None
    state: str = "running"


class SearchDisplay:
    """Implements ``workers.progress.SearchListener`` with a rich live display."""

    def __init__(
        self, console: Console, *, target: float, tolerance: float, max_trials: int, epochs: int
    ) -> None:
        self.console = console
        self.target, self.tolerance, self.epochs = target, tolerance, epochs
        self.rows: dict[str, _Row] = {}
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        self.task = self.progress.add_task("trials finished", total=max_trials)
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> SearchDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.update(self._render())
        self.live.stop()

    def _state(self, row: _Row) -> str:
        if row.state != "done" or row.sparsity is None:
            return row.state
        if abs(row.sparsity - self.target) <= self.tolerance:
            return "landed"
        return "above" if row.sparsity > self.target else "below"

    def _render(self) -> Group:
        rows = [
            TrialRow(trial_id, r.weight_decay, r.s_init, r.epoch, r.sparsity, r.val_acc,
                     self._state(r), r.method)
            for trial_id, r in self.rows.items()
        ]  # fmt: skip
        table = trials_table(rows, target=self.target, tolerance=self.tolerance, epochs=self.epochs)
        return Group(table, self.progress)

    def _row(self, trial_id: str, config: dict[str, Any]) -> _Row:
        if trial_id not in self.rows:
            s_init, method = config.get("s_init"), config.get("method")
            self.rows[trial_id] = _Row(
                float(config["weight_decay"]),
                None if s_init is None else float(s_init),
                method if isinstance(method, str) else None,
            )
        return self.rows[trial_id]

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        self._row(trial_id, config).state = "running"
        self.live.update(self._render())

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        row = self._row(trial_id, config)
        row.epoch = int(result.get("epoch", row.epoch))
        row.sparsity = result.get("sparsity", row.sparsity)
        row.val_acc = result.get("val_acc", row.val_acc)
        self.live.update(self._render())

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        self._row(trial_id, config).state = "failed" if failed else "done"
        self.progress.advance(self.task)
        self.live.update(self._render())
