"""A trial tracker that times its own work, phase by phase (the tracking benchmarks' probe).

:class:`TimedTrialTracker` behaves as :class:`workers.tracking.TrialTracker` and adds the wall time
of each of its phases to :attr:`~TimedTrialTracker.seconds`; :data:`PHASES` names them (their
meaning: :mod:`benchmarks.tracking_overhead`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from benchmarks._tracking_env import process_cpu
from str_core.train import EpochMetrics, Trainer
from strsearch.spec import SearchSpec
from workers.tracking import TrialTracker, TrialTracking
from workers.tracking.run_marker import RunMarker
from workers.tracking.trial import PendingModel

PHASES = ("start", "epochs", "flush", "plots", "upload", "end", "models")
"""Phases of the tracker's own time, in the order they happen (what each covers:
:mod:`benchmarks.tracking_overhead`)."""


class TimedTrialTracker(TrialTracker):
    """A :class:`TrialTracker` that adds the wall time of its own work to :attr:`seconds`.

    Behaviour is the parent's: waiting for the sender thread's batches at the start of
    ``on_train_end`` is timed as ``flush``, copying the budget files and figures as ``upload``,
    creating and saving the models as ``models``, and ending the run as ``end``. ``plots`` is the
    rest of ``on_train_end``: waiting for the last epochs' metrics (with the model's URI tag) and
    for the budget files and figures, which two threads send and write while the models are
    saved, beyond the models' own time. :attr:`figure_seconds` is how long the figures' thread
    took to write them.

    What the tracker makes other threads and processes do while the trial trains is not in the
    phases: :attr:`thread_cpu` is the CPU time of the sender thread's work before the trial's end
    (opening the run, the epochs' batches with the params), :attr:`server_cpu` the CPU time of the
    processes :attr:`server_pids` (the tracking server's, when it runs on this machine) from
    the trial's start to the start of its end (``nan`` without them).
    """

    server_pids: tuple[int, ...] = ()

    def __init__(
        self,
        tracking: TrialTracking,
        trial_id: str,
        spec: SearchSpec,
        weight_decay: float,
        s_init: float,
        marker: RunMarker | None = None,
    ) -> None:
        started = time.perf_counter()
        super().__init__(tracking, trial_id, spec, weight_decay, s_init, marker=marker)
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.figure_seconds = 0.0
        self.thread_cpu = 0.0
        self.server_cpu = math.nan
        self._server_started = 0.0
        self._ending = False
        self.seconds["start"] = time.perf_counter() - started

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        """Add the CPU time of the block's thread to :attr:`thread_cpu`, until the trial ends."""
        counted, started = not self._ending, time.thread_time()
        try:
            yield
        finally:
            if counted:
                self.thread_cpu += time.thread_time() - started

    def _open_run(self) -> None:
        with self.background():
            super()._open_run()

    def _log_epochs(
        self,
        batch: list[tuple[int, dict[str, float]]],
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        with self.background():
            super()._log_epochs(batch, tags, params)

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time spent in the block to ``seconds[phase]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started

    def on_train_start(self, trainer: Trainer) -> None:
        self._server_started = process_cpu(self.server_pids)
        with self.timed("start"):
            super().on_train_start(trainer)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        with self.timed("epochs"):
            super().on_epoch_end(trainer, metrics)

    def _wait_sent(self) -> None:
        with self.timed("flush"):
            super()._wait_sent()

    def _upload(self, folder: Path) -> None:
        with self.timed("upload"):
            super()._upload(folder)

    def _write_files(self, folder: Path, history: list[EpochMetrics]) -> None:
        started = time.perf_counter()
        try:
            super()._write_files(folder, history)
        finally:
            self.figure_seconds += time.perf_counter() - started

    def _finish(self) -> None:
        with self.timed("end"):
            super()._finish()

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        self._ending = True
        if self.server_pids:
            self.server_cpu = process_cpu(self.server_pids) - self._server_started
        timed = ("flush", "upload", "end", "models")
        before = sum(self.seconds[p] for p in timed)
        started = time.perf_counter()
        super().on_train_end(trainer, history)
        inside = sum(self.seconds[p] for p in timed) - before
        self.seconds["plots"] += time.perf_counter() - started - inside

    def _create_models(self, trainer: Trainer) -> list[PendingModel]:
        with self.timed("models"):
            return super()._create_models(trainer)

    def _save_models(self, models: list[PendingModel], trainer: Trainer) -> None:
        with self.timed("models"):
            super()._save_models(models, trainer)
