"""MLflow tracking of searches: the only module of the project that talks to MLflow.

A search (a *job*) is a parent run; each trial is a nested child run that the trial opens itself,
in its own process, so that it can log its own per-epoch metrics, plots and models::

    experiment "strsearch"  (MLFLOW_EXPERIMENT_NAME)
    └── run  kind=job    strsearch.job_id=J            spec params, progress, outcome, plots
        ├── run  kind=trial  strsearch.trial_id=T1     λ, s_init, epochs, budget, plots, models
        └── run  kind=trial  strsearch.trial_id=T2

A comparison job's run holds the comparison table and plot; the searches of its STR methods are
job runs nested under it (with their trials), and the trials of the other methods and seeds are
its own children.

Runs are found again by tag, never by a remembered id: a restored search continues its parent
run, and a restarted trial continues its child run (epochs already logged are not logged again).
Every call is an ordinary client call against the tracking server; per-epoch metrics go out in
one batch per epoch from a sender thread (training does not wait for the server), split to
MLflow's per-request limits.

Which server: ``tracking_uri`` if given, else ``MLFLOW_TRACKING_URI``, else the embedded server
(:mod:`workers.mlflow_server`: ``mlflow server`` with SQLite and local artifacts).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow.entities import LoggedModelOutput, Metric, Param
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.async_logging.run_operations import RunOperations

import str_core
from str_core.layers import STRMixin, densify
from str_core.pruning import bake
from str_core.train import Callback, EpochMetrics, Trainer
from strsearch.spec import SearchSpec
from workers import plots
from workers.comparison import ComparisonResult, MethodRow
from workers.mlflow_server import tracking_uri as default_tracking_uri
from workers.progress import trial_view
from workers.result import SearchResult, TrialSummary

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow prints a "View run" line whenever a run ends; the CLI prints the job's URL itself.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

DEFAULT_EXPERIMENT = "strsearch"
JOB_TAG = "strsearch.job_id"
TRIAL_TAG = "strsearch.trial_id"
KIND_TAG = "strsearch.kind"
PARENT_TAG = "mlflow.parentRunId"
MODEL_URI_TAG = "strsearch.model_uri"

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class TrackingSettings:
    """Where and whether a search is recorded.

    Attributes:
        enabled: record the search at all.
        tracking_uri: the server; ``None``: ``MLFLOW_TRACKING_URI`` or the embedded server.
        experiment: the MLflow experiment; ``None``: ``MLFLOW_EXPERIMENT_NAME`` or ``strsearch``.
        register: register the best landed model in the Model Registry.
        log_models: log each trial's trained model (STR and densified).
    """

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None
    register: bool = True
    log_models: bool = True

    def resolved_uri(self) -> str:
        """The tracking URI this search logs to (starts the embedded server if needed)."""
        return self.tracking_uri or default_tracking_uri()

    def resolved_experiment(self) -> str:
        """The experiment name this search logs to."""
        return self.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


@dataclass(frozen=True)
class TrialTracking:
    """What a trial needs to find its run: plain values, carried in the trial's config."""

    tracking_uri: str
    experiment_id: str
    job_id: str
    parent_run_id: str
    log_models: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the trial config."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialTracking:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


# ----------------------------------------------------------------------------- helpers


def spec_params(spec: SearchSpec) -> dict[str, str]:
    """The spec flattened to ``section.field`` params (lists as JSON), within MLflow's limits."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
            return
        text = json.dumps(value) if isinstance(value, list | bool) or value is None else str(value)
        out[prefix] = text[:MAX_PARAM_CHARS]

    walk("", spec.model_dump(mode="json"))
    return out


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches of :data:`MAX_PARAMS_PER_BATCH` (a re-logged equal value is fine)."""
    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def log_metrics(
    client: MlflowClient,
    run_id: str,
    values: Mapping[str, float],
    step: int,
    *,
    synchronous: bool = True,
) -> list[RunOperations]:
    """Log finite numbers as metrics at ``step``, in batches within MLflow's limits.

    Returns:
        The pending operations of an asynchronous call (``wait()`` on them), else nothing.
    """
    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    pending = []
    for start in range(0, len(items), MAX_METRICS_PER_BATCH):
        batch = items[start : start + MAX_METRICS_PER_BATCH]
        operations = client.log_batch(run_id, metrics=batch, synchronous=synchronous)
        if operations is not None:
            pending.append(operations)
    return pending


def find_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The oldest live run of the experiment carrying all ``tags``, or ``None``."""
    clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs(
        [experiment_id], filter_string=clauses, order_by=["attributes.start_time ASC"]
    )
    return runs[0].info.run_id if runs else None


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except mlflow.exceptions.MlflowException:  # created meanwhile by another process
        found = client.get_experiment_by_name(name)
        assert found is not None
        return str(found.experiment_id)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def model_name(spec: SearchSpec) -> str:
    """Registered model name of a job: ``strsearch-<model>-<dataset>-s<target %>``."""
    return f"strsearch-{spec.model}-{spec.dataset}-s{100 * spec.target_sparsity:g}"


# -------------------------------------------------------------------------------- trial


def trial_trackers(config: Mapping[str, Any], trial_id: str) -> list[Callback]:
    """The trainer callbacks that record a trial: one :class:`TrialTracker` when the trial's
    config carries ``tracking``, none otherwise."""
    if not config.get("tracking"):
        return []
    spec = SearchSpec.model_validate(config["spec"])
    tracking = TrialTracking.from_dict(config["tracking"])
    view = trial_view(config)
    s_init = view.get("s_init")
    return [
        TrialTracker(
            tracking,
            trial_id,
            spec,
            float(view["weight_decay"]),
            None if s_init is None else float(s_init),
            method=str(view.get("method") or spec.method),
            seed=view.get("seed"),
        )
    ]


class TrialTracker(Callback):
    """Trainer callback logging one trial to its child run (rank 0 of the trial only).

    Args:
        tracking: where the job's runs are.
        trial_id: Tune's trial id (names and tags the run).
        spec: the job's spec (logged as params).
        weight_decay: λ of the trial.
        s_init: ``s_init`` of the trial (``None`` for a pruning baseline).
        method: what the trial trains (``str``, an ablation or a baseline).
        seed: the training seed of a comparison trial.
    """

    def __init__(
        self,
        tracking: TrialTracking,
        trial_id: str,
        spec: SearchSpec,
        weight_decay: float,
        s_init: float | None,
        *,
        method: str = "str",
        seed: int | None = None,
    ) -> None:
        self.tracking = tracking
        self.trial_id = trial_id
        self.spec = spec
        self.weight_decay = weight_decay
        self.s_init = s_init
        self.method = method
        self.seed = seed
        self.client = MlflowClient(tracking.tracking_uri)
        self.run_id = ""
        self.last_logged = 0
        # Epoch metrics go out from one thread of our own, synchronously: MLflow's asynchronous
        # queue makes the first end of a run wait up to a second for its polling thread.
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strsearch-mlflow")
        self.sent: list[Future[list[RunOperations]]] = []

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.rank != 0:
            return
        tags = {
            JOB_TAG: self.tracking.job_id,
            TRIAL_TAG: self.trial_id,
            KIND_TAG: "trial",
        }
        run_id = find_run(self.client, self.tracking.experiment_id, tags)
        if run_id is None:
            run = self.client.create_run(
                self.tracking.experiment_id,
                run_name=f"trial-{self.trial_id} {self._label()}",
                tags={
                    **tags,
                    PARENT_TAG: self.tracking.parent_run_id,
                    "strsearch.target": f"{self.spec.target_sparsity:g}",
                    "strsearch.method": self.method,
                },
            )
            run_id = run.info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "sparsity")
            self.last_logged = max((m.step for m in history), default=0)
        self.run_id = run_id
        log_params(self.client, run_id, self._params())

    def _label(self) -> str:
        """``λ=… s=…`` of a search trial; ``<method> seed=… …`` of a comparison trial."""
        label = f"λ={self.weight_decay:.4g}"
        if self.s_init is not None:
            label += f" s={self.s_init:g}"
        if self.seed is not None:
            label = f"{self.method} seed={self.seed} {label}"
        return label

    def _params(self) -> dict[str, str]:
        """The trial's params: the spec's, λ, ``s_init``, method, seed and the trial id."""
        params = spec_params(self.spec) | {
            "weight_decay": f"{self.weight_decay:g}",
            "trial_id": self.trial_id,
            "trial_method": self.method,
        }
        if self.s_init is not None:
            params["s_init"] = f"{self.s_init:g}"
        if self.seed is not None:
            params["trial_seed"] = str(self.seed)
        return params

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        if trainer.rank != 0 or metrics.epoch <= self.last_logged:
            return
        values = metrics.flat() | {"weight_decay": self.weight_decay}
        if self.s_init is not None:
            values["s_init"] = self.s_init
        values["target_gap"] = abs(metrics.scalars["sparsity"] - self.spec.target_sparsity)
        self.sent.append(
            self.sender.submit(log_metrics, self.client, self.run_id, values, metrics.epoch)
        )
        self.last_logged = metrics.epoch

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        if trainer.rank != 0:
            return
        for sent in self.sent:
            sent.result()  # re-raises a failed request
        self.sent.clear()
        self.sender.shutdown()
        final = history[-1] if history else None
        with tempfile.TemporaryDirectory(prefix="strsearch-trial-artifacts-") as tmp:
            folder = Path(tmp)
            if final is not None:
                self._write_budget(folder, final)
                title = f"trial {self.trial_id}: {self._label()}"
                budget = plots.budget_figure(final.layers, title=title)
                plots.save_png(budget, folder / "budget.png")
                dynamics = plots.dynamics_figure(history, title=title)
                plots.save_png(dynamics, folder / "dynamics.png")
            self.client.log_artifacts(self.run_id, str(folder))
        if self.tracking.log_models:
            self._log_models(trainer)
        self.client.set_terminated(self.run_id, "FINISHED")

    def _write_budget(self, folder: Path, final: EpochMetrics) -> None:
        rows = [
            [name, layer.params, layer.nonzero, layer.sparsity, layer.threshold]
            for name, layer in final.layers.items()
        ]
        header = ["layer", "params", "nonzero", "sparsity", "threshold"]
        _write_csv(folder / "budget.csv", header, rows)
        table = [dict(zip(header, row, strict=True)) for row in rows]
        summary = {"epoch": final.epoch, "scalars": final.scalars, "layers": table}
        (folder / "budget.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")

    def _log_models(self, trainer: Trainer) -> None:
        """Log the STR model and its densified copy, with an input example and a signature.

        Each is created as a logged model of this run and saved by its id with no active run
        (with one, ``log_model`` fetches the history of every metric of the run to copy those at
        its step), then both are linked to the run as its outputs in one call. The parts of
        ``str_core`` that loading a pickled model imports travel with it as code.
        """
        model = trainer.model.to("cpu").eval()
        example = torch.stack([trainer.data.test[i][0] for i in range(2)])
        with torch.no_grad():
            output = model(example)
        signature = infer_signature(example.numpy(), output.numpy())
        # a baseline's masks are parametrizations, which cannot be pickled: log it baked
        dense = bake(densify(copy.deepcopy(model))).eval()
        has_str = any(isinstance(m, STRMixin) for m in model.modules())
        nets = (("str_model", model), ("model", dense)) if has_str else (("model", dense),)
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
        params = self._params()
        uris, outputs = {}, []
        mlflow.set_tracking_uri(self.tracking.tracking_uri)
        with tempfile.TemporaryDirectory(prefix="strsearch-model-code-") as tmp:
            code = [str(_copy_model_code(Path(tmp)))]
            for name, net in nets:
                logged = mlflow.initialize_logged_model(
                    name=name,
                    source_run_id=self.run_id,
                    params=params,
                    experiment_id=self.tracking.experiment_id,
                )
                info = mlflow.pytorch.log_model(
                    net,
                    name=name,
                    model_id=logged.model_id,
                    signature=signature,
                    input_example=example.numpy(),
                    pip_requirements=requirements,
                    code_paths=code,
                    # torch.export cannot trace STR's data-dependent threshold; pickle it
                    serialization_format="pickle",
                )
                uris[name] = info.model_uri
                outputs.append(LoggedModelOutput(logged.model_id, step=0))
        self.client.log_outputs(self.run_id, outputs)
        self.client.set_tag(self.run_id, MODEL_URI_TAG, uris["model"])


MODEL_CODE = ("__init__.py", "config.py", "budgets.py", "layers", "models")
"""The parts of ``str_core`` that loading a pickled model imports (the package, its configs and
the budget checks they use, the layers and the model registry); data, training and metrics code
is not needed to load a model."""


def _copy_model_code(dest: Path) -> Path:
    """Copy the :data:`MODEL_CODE` parts of ``str_core`` to ``dest/str_core`` (no bytecode)."""
    source = Path(str_core.__file__).parent
    package = dest / "str_core"
    package.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in MODEL_CODE:
        if (source / part).is_dir():
            shutil.copytree(source / part, package / part, ignore=ignore)
        else:
            shutil.copy2(source / part, package / part)
    return package


# ---------------------------------------------------------------------------------- job


class JobTracker:
    """The parent run of one search: created (or found again by its job id) in the driver.

    It also listens to the search (:class:`workers.progress.SearchListener`) to log progress:
    trials started, finished, landed, and the best distance to the target so far.
    """

    def __init__(self, client: MlflowClient, spec: SearchSpec, tracking: TrialTracking) -> None:
        self.client = client
        self.spec = spec
        self.tracking = tracking
        self.latest: dict[str, dict[str, Any]] = {}
        self.finished: set[str] = set()
        self.started: set[str] = set()

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
        experiment_id = _experiment_id(client, settings.resolved_experiment())
        tags = {JOB_TAG: job_id, KIND_TAG: "job"}
        run_id = find_run(client, experiment_id, tags)
        if run_id is None:
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
        log_metrics(self.client, self.run_id, values, step=len(self.finished))

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
        self._close_children({t.trial_id for t in result.trials})
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
        log_metrics(self.client, self.run_id, values, step=0)
        tags = {"strsearch.reached": str(result.reached).lower()}
        if best is not None:
            tags["strsearch.best_trial"] = best.trial_id
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)
        with tempfile.TemporaryDirectory(prefix="strsearch-job-artifacts-") as tmp:
            self._write_job_artifacts(Path(tmp), result)
            self.client.log_artifacts(self.run_id, tmp)
        registered = None
        if settings.register and result.reached and best is not None:
            registered = self._register(best)
        self.client.set_terminated(self.run_id, "FINISHED")
        return registered

    def finish_comparison(self, result: ComparisonResult) -> None:
        """Log a comparison's outcome: per-method metrics (``<method>/test_acc_mean``, ...),
        the table (``comparison.csv``, ``comparison.json``) and the accuracy-vs-FLOPs plot.
        Nothing is registered (each trial run holds its model)."""
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
        log_metrics(self.client, self.run_id, values, step=0)
        self.client.set_tag(self.run_id, "strsearch.reached", str(result.reached).lower())
        with tempfile.TemporaryDirectory(prefix="strsearch-job-artifacts-") as tmp:
            folder = Path(tmp)
            header = [f.name for f in dataclasses.fields(MethodRow)]
            rows = [[getattr(row, k) for k in header] for row in result.table]
            _write_csv(folder / "comparison.csv", header, rows)
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
        self._close_children()
        self.client.set_terminated(self.run_id, status)

    def trial_runs(self) -> dict[str, str]:
        """Trial id → child run id of every trial run of this job."""
        runs = self.client.search_runs(
            [self.tracking.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' and tags.`{KIND_TAG}` = 'trial'",
        )
        return {r.data.tags.get(TRIAL_TAG, ""): r.info.run_id for r in runs}

    def _close_children(self, known: set[str] | None = None) -> None:
        for trial_id, run_id in self.trial_runs().items():
            if known is not None and trial_id not in known:
                self.client.delete_run(run_id)
            elif self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, "KILLED")

    def _write_job_artifacts(self, folder: Path, result: SearchResult) -> None:
        header = ["trial_id", "weight_decay", "s_init", "status", "epochs", "sparsity"]
        header += ["val_acc", "test_acc", "flops", "dense_flops", "band_stop", "error"]
        rows = [[getattr(t, k) for k in header] for t in result.trials]
        _write_csv(folder / "trials.csv", header, rows)
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

    def _register(self, best: TrialSummary) -> str | None:
        """Register the best trial's densified model (once per job: a re-run of a finished
        search returns the version registered the first time)."""
        done = self.client.get_run(self.run_id).data.tags.get("strsearch.registered_model")
        if done is not None:
            return done
        run_id = self.trial_runs().get(best.trial_id)
        if run_id is None:
            return None
        uri = self.client.get_run(run_id).data.tags.get(MODEL_URI_TAG)
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
        mlflow.set_tracking_uri(self.tracking.tracking_uri)
        version = mlflow.register_model(uri, name, tags=tags)
        self.client.set_tag(self.run_id, "strsearch.registered_model", f"{name}/{version.version}")
        return f"{name}/{version.version}"


def _point(trial: TrialSummary) -> plots.TradeoffPoint | None:
    accuracy = trial.test_acc if trial.test_acc is not None else trial.val_acc
    if trial.sparsity is None or accuracy is None:
        return None
    landed = trial.status == "landed"
    return plots.TradeoffPoint(trial.trial_id, trial.sparsity, accuracy, trial.flops, landed)
