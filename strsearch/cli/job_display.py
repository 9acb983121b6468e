"""The live view of a service job: a status line, the trials table and a progress bar.

It draws what the agent last reported in the job's ``progress`` (docs/api.md), with the same
trials table as ``strsearch search`` (:func:`strsearch.cli.search_display.trials_table`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from strsearch.cli.search_display import TrialRow, trials_table
from strsearch.client import Client

FINAL_STATES = frozenset({"succeeded", "unreached", "failed", "cancelled"})
STATE_STYLE = {
    "queued": "cyan",
    "running": "blue",
    "succeeded": "bold green",
    "unreached": "bold yellow",
    "failed": "bold red",
    "cancelled": "bold magenta",
}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def trial_rows(progress: Mapping[str, Any] | None) -> list[TrialRow]:
    """The trials of a job's ``progress`` as table rows (malformed entries are skipped)."""
    rows = []
    for trial in (progress or {}).get("trials") or []:
        if not isinstance(trial, Mapping):
            continue
        weight_decay, s_init = _float(trial.get("weight_decay")), _float(trial.get("s_init"))
        method = trial.get("method")
        if weight_decay is None or (s_init is None and method in (None, "str")):
            continue
        rows.append(
            TrialRow(
                trial_id=str(trial.get("trial_id", "?")),
                weight_decay=weight_decay,
                s_init=s_init,
                epoch=int(trial.get("epoch") or 0),
                sparsity=_float(trial.get("sparsity")),
                val_acc=_float(trial.get("val_acc")),
                state=str(trial.get("state", "")),
                method=method if isinstance(method, str) else None,
            )
        )
    return rows


def status_line(job: Mapping[str, Any]) -> Text:
    """``job <id> <state> · digits_cnn on digits → 90.00% ± 0.50% · attempt 1``."""
    spec = job.get("spec") or {}
    state = str(job.get("state", "?"))
    text = Text("job ")
    text.append(str(job.get("id", "?")), style="bold")
    text.append(" ")
    text.append(state, style=STATE_STYLE.get(state, ""))
    if job.get("cancel_requested") and state not in FINAL_STATES:
        text.append(" (cancel requested)", style="magenta")
    target, tolerance = _float(spec.get("target_sparsity")), _float(spec.get("tolerance"))
    if target is not None:
        band = f"{target:.2%}" + (f" ± {tolerance:.2%}" if tolerance is not None else "")
        text.append(f" · {spec.get('model')} on {spec.get('dataset')} → {band}")
    if job.get("attempts"):
        text.append(f" · attempt {job['attempts']}")
    if state == "queued":
        text.append(" · waiting for an agent", style="dim")
    return text


class JobDisplay:
    """A rich ``Live`` view of one job, refreshed with :meth:`update` on every poll."""

    def __init__(self, console: Console, job: Mapping[str, Any]) -> None:
        self.console = console
        spec = job.get("spec") or {}
        self.target = _float(spec.get("target_sparsity")) or 0.0
        self.tolerance = _float(spec.get("tolerance")) or 0.0
        self.epochs = int((spec.get("training") or {}).get("epochs") or 0)
        total = int((spec.get("search") or {}).get("max_trials") or 0) or None
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("trials finished", total=total)
        self.job: Mapping[str, Any] = job
        self.live = Live(self._render(), console=console, refresh_per_second=4)

    def __enter__(self) -> JobDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._render())
        self.live.stop()

    def update(self, job: Mapping[str, Any]) -> None:
        """Show the job as it is now."""
        self.job = job
        self.live.update(self._render())

    def _render(self) -> Group:
        progress = self.job.get("progress") or {}
        total = progress.get("trials_total")
        self.progress.update(
            self.task,
            completed=int(progress.get("trials_done") or 0),
            total=int(total) if isinstance(total, int) and total > 0 else None,
        )
        parts: list[Any] = [status_line(self.job)]
        rows = trial_rows(progress)
        if rows:
            parts.append(
                trials_table(rows, target=self.target, tolerance=self.tolerance, epochs=self.epochs)
            )
        parts.append(self.progress)
        return Group(*parts)


def follow(
    client: Client, job: dict[str, Any], console: Console, interval: float
) -> dict[str, Any]:
    """Show ``job`` live, polling it every ``interval`` seconds, until a final state; return it.

    API errors and ``KeyboardInterrupt`` propagate (the display is closed first).
    """
    with JobDisplay(console, job) as display:
        while job["state"] not in FINAL_STATES:
            time.sleep(interval)
            job = client.job(job["id"])
            display.update(job)
    console.print()
    return job
