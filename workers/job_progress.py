"""The ``progress`` of a running job (docs/api.md, "The job"), built from the search's events.

:class:`JobProgress` is a :class:`~workers.progress.SearchListener`: the agent feeds it the trial
events its search process relays, and sends :meth:`JobProgress.snapshot` with every heartbeat.
It is plain Python (no Ray, no MLflow) and thread-safe, so it can be fed from one thread and read
from another.

A job claimed again after an interruption resumes its Tune experiment, whose finished trials send
no events again; seeding the aggregate with the job's last reported progress
(:meth:`JobProgress.resume`) keeps them counted. Totals are recomputed from the per-trial rows on
every snapshot, so a repeated event (a trial restarted from its checkpoint reports the same epoch
number again) never counts twice.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

RUNNING = "running"
"""State of a trial that started and has not finished; the final states are those of
:class:`~workers.result.TrialSummary` (``landed``, ``above``, ``below``, ``failed``)."""

TRIAL_FIELDS = (
    "trial_id",
    "method",
    "seed",
    "weight_decay",
    "s_init",
    "epoch",
    "sparsity",
    "val_acc",
    "state",
)


def utc_now() -> str:
    """The current time as ISO 8601 in UTC with a ``Z`` (the API's time format)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def mlflow_run_url(tracking: Mapping[str, Any]) -> str | None:
    """The parent run's page of a trial config's ``tracking`` entry (an HTTP tracking server),
    the same address :meth:`workers.tracking.JobTracker.run_url` gives."""
    uri = str(tracking.get("tracking_uri") or "")
    experiment, run = tracking.get("experiment_id"), tracking.get("parent_run_id")
    if not uri.startswith(("http://", "https://")) or not experiment or not run:
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run}"


class JobProgress:
    """Aggregates trial events into the job's ``progress`` JSON.

    Args:
        target: the job's target sparsity.
        tolerance: accepted ``|sparsity - target|``; classifies a finished trial.
        trials_total: the trial budget (``SearchSpec.trial_budget()``).
        clock: ISO time of an update (tests pass a fixed one).
    """

    def __init__(
        self,
        target: float,
        tolerance: float,
        trials_total: int,
        *,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.target = target
        self.tolerance = tolerance
        self.trials_total = trials_total
        self._clock = clock
        self._lock = threading.Lock()
        self._trials: dict[str, dict[str, Any]] = {}
        self._test_acc: dict[str, float | None] = {}
        self._best: dict[str, Any] | None = None
        self._run_url: str | None = None
        self._updated_at = clock()
        self._revision = 0

    @property
    def revision(self) -> int:
        """How many updates this progress has had: a sender compares it with the last one it
        sent to know whether there is anything new."""
        with self._lock:
            return self._revision

    # --- seeding and the final state ---

    def resume(self, previous: Mapping[str, Any] | None) -> None:
        """Start from a progress reported by an earlier attempt of the job.

        Trials it lists keep their rows (those still running then are restarted by the resumed
        experiment, which reports them again); its best and MLflow link are kept until replaced.
        """
        if not previous:
            return
        with self._lock:
            for row in previous.get("trials") or ():
                if isinstance(row, Mapping) and row.get("trial_id"):
                    trial_id = str(row["trial_id"])
                    self._trials[trial_id] = {k: row.get(k) for k in TRIAL_FIELDS}
            best = previous.get("best")
            self._best = dict(best) if isinstance(best, Mapping) else None
            url = previous.get("mlflow_run_url")
            self._run_url = str(url) if url else self._run_url

    def set_mlflow_run_url(self, url: str | None) -> None:
        """Record the job's MLflow parent run page."""
        if url:
            with self._lock:
                if url != self._run_url:
                    self._run_url = url
                    self._touch()

    def complete(self, result: Mapping[str, Any]) -> None:
        """Take every trial's final row, the best trial and the MLflow link from the search's
        result (``SearchResult.to_dict()``), so the last progress matches the result."""
        with self._lock:
            for trial in result.get("trials") or ():
                trial_id = str(trial["trial_id"])
                self._trials[trial_id] = {
                    "trial_id": trial_id,
                    "method": trial.get("method"),
                    "seed": trial.get("seed"),
                    "weight_decay": _number(trial.get("weight_decay")),
                    "s_init": _number(trial.get("s_init")),
                    "epoch": int(trial.get("epochs") or 0),
                    "sparsity": _number(trial.get("sparsity")),
                    "val_acc": _number(trial.get("val_acc")),
                    "state": str(trial.get("status") or "failed"),
                }
                self._test_acc[trial_id] = _number(trial.get("test_acc"))
            best = result.get("best")
            if isinstance(best, Mapping):
                self._best = self._best_of(self._trials[str(best["trial_id"])])
            if result.get("mlflow_run_url"):
                self._run_url = str(result["mlflow_run_url"])
            self._touch()

    # --- SearchListener ---

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        """A trial started (or was restarted from its checkpoint)."""
        with self._lock:
            row = self._row(trial_id, config)
            row["state"] = RUNNING
            if isinstance(tracking := config.get("tracking"), Mapping):
                self._run_url = mlflow_run_url(tracking) or self._run_url
            self._touch()

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        """A trial reported an epoch."""
        with self._lock:
            row = self._row(trial_id, config)
            row["state"] = RUNNING
            epoch = result.get("epoch")
            if isinstance(epoch, int) and not isinstance(epoch, bool):
                row["epoch"] = max(int(row.get("epoch") or 0), epoch)
            for key in ("sparsity", "val_acc"):
                if (value := _number(result.get(key))) is not None:
                    row[key] = value
            self._test_acc[trial_id] = _number(result.get("test_acc"))
            self._touch()

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        """A trial ended: its state becomes landed, above, below or failed."""
        with self._lock:
            row = self._row(trial_id, config)
            row["state"] = "failed" if failed else self._classify(row.get("sparsity"))
            self._best = self._pick_best() or self._best
            self._touch()

    # --- reading ---

    def snapshot(self) -> dict[str, Any]:
        """The ``progress`` JSON: a deep copy, safe to serialise while events keep coming."""
        with self._lock:
            rows = list(self._trials.values())
            states = [row.get("state") for row in rows]
            return copy.deepcopy(
                {
                    "trials_done": sum(s not in (RUNNING, None) for s in states),
                    "trials_running": sum(s == RUNNING for s in states),
                    "trials_total": self.trials_total,
                    "epochs": sum(int(row.get("epoch") or 0) for row in rows),
                    "best": self._best,
                    "trials": rows,
                    "mlflow_run_url": self._run_url,
                    "updated_at": self._updated_at,
                }
            )

    # --- internals (called with the lock held) ---

    def _touch(self) -> None:
        self._updated_at = self._clock()
        self._revision += 1

    def _row(self, trial_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        row = self._trials.get(trial_id)
        if row is None:
            row = dict.fromkeys(TRIAL_FIELDS) | {"trial_id": trial_id, "epoch": 0}
            self._trials[trial_id] = row
        for key in ("weight_decay", "s_init"):
            if (value := _number(config.get(key))) is not None:
                row[key] = value
        if isinstance(method := config.get("method"), str):
            row["method"] = method
        if isinstance(seed := config.get("seed"), int):
            row["seed"] = seed
        return row

    def _classify(self, sparsity: Any) -> str:
        value = _number(sparsity)
        if value is None:
            return "failed"
        if abs(value - self.target) <= self.tolerance:
            return "landed"
        return "above" if value > self.target else "below"

    def _pick_best(self) -> dict[str, Any] | None:
        """The rule of :meth:`workers.result.SearchResult.from_trials` over finished trials:
        the most accurate landed trial (ties: closest to the target), else the closest one."""
        done = [r for r in self._trials.values() if r.get("state") not in (RUNNING, None)]
        landed = [r for r in done if r["state"] == "landed"]
        if landed:
            return self._best_of(
                max(landed, key=lambda r: (r["val_acc"] or 0.0, -self._gap(r["sparsity"])))
            )
        measured = [r for r in done if _number(r.get("sparsity")) is not None]
        if measured:
            return self._best_of(min(measured, key=lambda r: self._gap(r["sparsity"])))
        return None

    def _gap(self, sparsity: Any) -> float:
        return abs(float(sparsity or 0.0) - self.target)

    def _best_of(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "trial_id": row["trial_id"],
            "method": row.get("method"),
            "weight_decay": row.get("weight_decay"),
            "s_init": row.get("s_init"),
            "sparsity": row.get("sparsity"),
            "val_acc": row.get("val_acc"),
            "test_acc": self._test_acc.get(str(row["trial_id"])),
            "status": row.get("state"),
        }
