"""A trial tracker that times its own work, phase by phase (the tracking benchmarks' probe).

:class:`TimedTrialTracker` behaves as :class:`workers.tracking.TrialTracker` and adds the wall time
of each of its phases to :attr:`~TimedTrialTracker.seconds`; :data:`PHASES` names them (their
meaning: :mod:`benchmarks.tracking_overhead`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from mlflow.tracking import MlflowClient

from str_core.train import EpochMetrics, Trainer
from strsearch.spec import SearchSpec
from workers.tracking import TrialTracker, TrialTracking

PHASES = ("start", "epochs", "flush", "plots", "upload", "end", "models")
"""Phases of the tracker's own time, in the order they happen (what each covers:
:mod:`benchmarks.tracking_overhead`)."""


class _TimedClient(MlflowClient):
    """An ``MlflowClient`` that adds the time of its artifact uploads and run ends to ``seconds``
    (``upload`` and ``end``)."""

    def __init__(self, tracking_uri: str, seconds: dict[str, float]) -> None:
        super().__init__(tracking_uri)
        self.seconds = seconds

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        started = time.perf_counter()
        try:
            super().log_artifacts(run_id, local_dir, artifact_path)
        finally:
            self.seconds["upload"] += time.perf_counter() - started

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        started = time.perf_counter()
        try:
            super().set_terminated(run_id, status, end_time)
        finally:
            self.seconds["end"] += time.perf_counter() - started


class TimedTrialTracker(TrialTracker):
    """A :class:`TrialTracker` that adds the wall time of its own work to :attr:`seconds`.

    Behaviour is the parent's: sending the last epochs and waiting for every batch at the start
    of ``on_train_end`` is timed as ``flush``; its client is an ``MlflowClient`` that times its
    uploads and run ends. ``plots`` is the rest of ``on_train_end``: the budget CSV/JSON and the
    two figures rendered to PNG.
    """

    def __init__(
        self,
        tracking: TrialTracking,
        trial_id: str,
        spec: SearchSpec,
        weight_decay: float,
        s_init: float,
    ) -> None:
        started = time.perf_counter()
        super().__init__(tracking, trial_id, spec, weight_decay, s_init)
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.client = _TimedClient(tracking.tracking_uri, self.seconds)
        self.seconds["start"] = time.perf_counter() - started

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time spent in the block to ``seconds[phase]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started

    def on_train_start(self, trainer: Trainer) -> None:
        with self.timed("start"):
            super().on_train_start(trainer)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        with self.timed("epochs"):
            super().on_epoch_end(trainer, metrics)

    def flush(self) -> None:
        with self.timed("flush"):
            super().flush()

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        timed = ("flush", "upload", "end", "models")
        before = sum(self.seconds[p] for p in timed)
        started = time.perf_counter()
        super().on_train_end(trainer, history)
        inside = sum(self.seconds[p] for p in timed) - before
        self.seconds["plots"] += time.perf_counter() - started - inside

    def _log_models(self, trainer: Trainer) -> None:
        with self.timed("models"):
            super()._log_models(trainer)
