"""A job's parent run: the search's (or comparison's) progress, outcome, tables, plots and the
registered model."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from strsearch.spec import SearchSpec
from workers import plots
from workers.comparison import ComparisonResult, MethodRow
from workers.result import SearchResult, TrialSummary
from workers.tracking.common import (
    JOB_TAG,
    KIND_TAG,
    MODEL_URI_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    TrackingSettings,
    TrialTracking,
    experiment_of,
    find_run,
    log_metrics,
    log_params,
    model_name,
    spec_params,
    using_tracking_uri,
    write_csv,
)


class JobTracker:
    """The parent run of one search: created (or found again by its job id) in the driver.

    It also listens to the search (:class:`workers.progress.SearchListener`) to log progress:
    trials started, finished, landed, and the best distance to the target so far. Those requests
    go out from a thread of the tracker's own, in order, so Tune's event loop does not wait for
    the server; :meth:`finish` waits for them.
    """

    def __init__(self, client: MlflowClient, spec: SearchSpec, tracking: TrialTracking) -> None:
        self.client = client
        self.spec = spec
        self.tracking = tracking
        self.latest: dict[str, dict[str, Any]] = {}
        self.finished: set[str] = set()
        self.started: set[str] = set()
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strsearch-job")
        self.sent: list[Future[None]] = []

    @classmethod
    def open(
        cls,
        spec: SearchSpec,
        job_id: str,
        settings: TrackingSettings,
        *,
        method: str | None = None,
        parent_run_id: str | None = None,
    ) -> JobTracker:
        """Find the job's parent run by tag, or create it; log the spec as params.

        ``method`` names what the run holds (default: the spec's; ``comparison`` for a
        comparison job); ``parent_run_id`` nests it (a comparison's STR searches)."""
        uri = settings.resolved_uri()
        client = MlflowClient(uri)
        experiment_id = experiment_of(client, settings.resolved_experiment())
        tags = {JOB_TAG: job_id, KIND_TAG: "job"}
        found = find_run(client, experiment_id, tags)
        if found is None:
            method = method or spec.method
            kind = "comparison" if method == "comparison" else "search"
            extra = {PARENT_TAG: parent_run_id} if parent_run_id else {}
            run = client.create_run(
                experiment_id,
                run_name=f"{kind} {job_id}",
                tags={
                    **tags,
                    **extra,
                    "strsearch.target": f"{spec.target_sparsity:g}",
                    "strsearch.method": method,
                    "strsearch.model": spec.model,
                    "strsearch.dataset": spec.dataset,
                },
            )
            run_id = run.info.run_id
        else:
            run_id = found.info.run_id
            client.update_run(run_id, status="RUNNING")
        log_params(client, run_id, spec_params(spec))
        tracking = TrialTracking(uri, experiment_id, job_id, run_id, settings.log_models)
        return cls(client, spec, tracking)

    @property
    def run_id(self) -> str:
        """The parent run's id."""
        return self.tracking.parent_run_id

    def run_url(self) -> str:
        """The parent run's page in the MLflow UI (for an HTTP tracking server)."""
        base = self.tracking.tracking_uri.rstrip("/")
        return f"{base}/#/experiments/{self.tracking.experiment_id}/runs/{self.run_id}"

    # SearchListener ---------------------------------------------------------------
    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        self.started.add(trial_id)
        self._progress()

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        self.latest[trial_id] = result

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        self.finished.add(trial_id)
        self._progress()

    def _progress(self) -> None:
        done = [self.latest.get(t, {}) for t in self.finished]
        gaps = [abs(r["sparsity"] - self.spec.target_sparsity) for r in done if "sparsity" in r]
        values: dict[str, float] = {
            "trials_started": len(self.started),
            "trials_finished": len(self.finished),
            "trials_landed": sum(g <= self.spec.tolerance for g in gaps),
        }
        if gaps:
            values["best_target_gap"] = min(gaps)
        self.sent.append(
            self.sender.submit(log_metrics, self.client, self.run_id, values, len(self.finished))
        )

    def _drain(self, *, raise_errors: bool = True) -> None:
        """Wait until every progress request is sent and stop the sender (the job has ended: no
        trial event follows); re-raise the first failure if asked."""
        sent, self.sent = self.sent, []
        wait(sent)
        self.sender.shutdown()
        errors = [e for f in sent if (e := f.exception()) is not None]
        if errors and raise_errors:
            raise errors[0]

    # outcome ------------------------------------------------------------------------
    def finish(self, result: SearchResult, settings: TrackingSettings) -> str | None:
        """Log the outcome, the trials table and the trade-off plots; register the best model.

        Child runs left running (trials stopped by Tune) are marked killed; child runs of trials
        the search does not know (started in the instant before an interruption, then forgotten
        by the restored experiment, whose searcher suggests them again) are deleted (MLflow's
        soft delete: ``mlflow gc`` purges them, ``restore_run`` brings them back).

        Returns:
            The registered model version's name and version as ``name/version``, or ``None``.
        """
        self._drain()
        children = self._close_children({t.trial_id for t in result.trials})
        best = result.best
        values: dict[str, float] = {
            "target_sparsity": result.target,
            "reached": float(result.reached),
            "trials": len(result.trials),
            "total_epochs": result.total_epochs,
        }
        if best is not None and best.sparsity is not None:
            values |= {"best_sparsity": best.sparsity, "best_val_acc": best.val_acc or math.nan}
            values |= {"best_test_acc": best.test_acc or math.nan, "best_flops": best.flops or 0}
        tags = {"strsearch.reached": str(result.reached).lower()}
        if best is not None:
            tags["strsearch.best_trial"] = best.trial_id
        log_metrics(self.client, self.run_id, values, step=0, tags=tags)
        with tempfile.TemporaryDirectory(prefix="strsearch-job-artifacts-") as tmp:
            self._write_job_artifacts(Path(tmp), result)
            self.client.log_artifacts(self.run_id, tmp)
        registered = None
        if settings.register and result.reached and best is not None:
            registered = self._register(best, children.get(best.trial_id))
        self.client.set_terminated(self.run_id, "FINISHED")
        return registered

    def finish_comparison(self, result: ComparisonResult) -> None:
        """Log a comparison's outcome: per-method metrics (``<method>/test_acc_mean``, ...),
        the table (``comparison.csv``, ``comparison.json``) and the accuracy-vs-FLOPs plot.
        Nothing is registered (each trial run holds its model)."""
        self._drain()
        self._close_children({t.trial_id for t in result.trials})
        values: dict[str, float] = {
            "target_sparsity": result.target,
            "reached": float(result.reached),
            "trials": len(result.trials),
            "total_epochs": result.total_epochs,
        }
        fields = ("sparsity_mean", "sparsity_std", "test_acc_mean", "test_acc_std", "flops_mean")
        for row in result.table:
            for name in fields:
                value = getattr(row, name)
                if value is not None:
                    values[f"{row.method}/{name}"] = value
        tags = {"strsearch.reached": str(result.reached).lower()}
        log_metrics(self.client, self.run_id, values, step=0, tags=tags)
        with tempfile.TemporaryDirectory(prefix="strsearch-job-artifacts-") as tmp:
            folder = Path(tmp)
            header = [f.name for f in dataclasses.fields(MethodRow)]
            rows = [[getattr(row, k) for k in header] for row in result.table]
            write_csv(folder / "comparison.csv", header, rows)
            (folder / "comparison.json").write_text(
                json.dumps(result.to_dict(), indent=1), encoding="utf-8"
            )
            points = [
                plots.MethodPoint(
                    row.method,
                    row.flops_mean,
                    row.test_acc_mean,
                    row.test_acc_std or 0.0,
                    row.sparsity_mean or 0.0,
                )
                for row in result.table
                if row.flops_mean is not None and row.test_acc_mean is not None
            ]
            dense = next((row.dense_flops for row in result.table if row.dense_flops), None)
            title = (
                f"{self.spec.model} on {self.spec.dataset} at {result.target:.1%} sparsity, "
                f"{len(self.spec.comparison.seeds)} seed(s)"
            )
            figure = plots.comparison_figure(points, dense_flops=dense, title=title)
            plots.save_png(figure, folder / "accuracy_vs_flops.png")
            self.client.log_artifacts(self.run_id, tmp)
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, status: str = "FAILED") -> None:
        """End the parent run as failed (or ``KILLED``) after an error in the driver."""
        self._drain(raise_errors=False)
        self._close_children()
        self.client.set_terminated(self.run_id, status)

    def trial_runs(self) -> dict[str, Run]:
        """Trial id → child run (info, params, metrics and tags) of every trial run of this job."""
        runs = self.client.search_runs(
            [self.tracking.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' and tags.`{KIND_TAG}` = 'trial'",
        )
        return {r.data.tags.get(TRIAL_TAG, ""): r for r in runs}

    def _close_children(self, known: set[str] | None = None) -> dict[str, Run]:
        """Mark running child runs killed and delete those of trials not in ``known``; returns
        the child runs as :meth:`trial_runs` found them."""
        runs = self.trial_runs()
        for trial_id, run in runs.items():
            if known is not None and trial_id not in known:
                self.client.delete_run(run.info.run_id)
            elif run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")
        return runs

    def _write_job_artifacts(self, folder: Path, result: SearchResult) -> None:
        header = ["trial_id", "weight_decay", "s_init", "status", "epochs", "sparsity"]
        header += ["val_acc", "test_acc", "flops", "dense_flops", "band_stop", "error"]
        rows = [[getattr(t, k) for k in header] for t in result.trials]
        write_csv(folder / "trials.csv", header, rows)
        (folder / "result.json").write_text(json.dumps(result.to_dict(), indent=1), "utf-8")
        points = [_point(t) for t in result.trials]
        measured = [p for p in points if p is not None]
        dense = next((t.dense_flops for t in result.trials if t.dense_flops), None)
        title = f"{self.spec.model} on {self.spec.dataset}, target {result.target:.1%}"
        axes: tuple[Literal["sparsity", "flops"], ...] = ("sparsity", "flops")
        for axis in axes:
            figure = plots.tradeoff_figure(
                measured,
                x=axis,
                target=result.target,
                tolerance=result.tolerance,
                dense_flops=dense,
                title=title,
            )
            plots.save_png(figure, folder / f"accuracy_vs_{axis}.png")

    def _register(self, best: TrialSummary, run: Run | None) -> str | None:
        """Register the best trial's densified model, logged in its child ``run`` (once per job:
        a re-run of a finished search returns the version registered the first time)."""
        done = self.client.get_run(self.run_id).data.tags.get("strsearch.registered_model")
        if done is not None:
            return done
        uri = None if run is None else run.data.tags.get(MODEL_URI_TAG)
        if uri is None:
            return None
        name = model_name(self.spec)
        tags = {
            "sparsity": f"{best.sparsity:.6f}",
            "val_acc": f"{best.val_acc}",
            "test_acc": f"{best.test_acc}",
            "flops": f"{best.flops:.0f}" if best.flops else "",
            "job_id": self.tracking.job_id,
            "trial_id": best.trial_id,
            "weight_decay": f"{best.weight_decay:g}",
        }
        with using_tracking_uri(self.tracking.tracking_uri):
            version = mlflow.register_model(uri, name, tags=tags)
        self.client.set_tag(self.run_id, "strsearch.registered_model", f"{name}/{version.version}")
        return f"{name}/{version.version}"


def _point(trial: TrialSummary) -> plots.TradeoffPoint | None:
    accuracy = trial.test_acc if trial.test_acc is not None else trial.val_acc
    if trial.sparsity is None or accuracy is None:
        return None
    landed = trial.status == "landed"
    return plots.TradeoffPoint(trial.trial_id, trial.sparsity, accuracy, trial.flops, landed)
