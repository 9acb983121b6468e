"""What every part of the tracking shares: settings, tags, MLflow's limits and the client calls
that respect them."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.tracking._tracking_service.utils as mlflow_uri_state
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient

from strsearch.spec import SearchSpec
from workers.mlflow_server import tracking_uri as default_tracking_uri

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
MAX_TAGS_PER_BATCH = 100
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
    log_steps(client, run_id, [], params=params)


def log_metrics(
    client: MlflowClient,
    run_id: str,
    values: Mapping[str, float],
    step: int,
    *,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Log finite numbers as metrics at ``step`` (and ``tags``), in batches within MLflow's
    limits."""
    log_steps(client, run_id, [(step, values)], tags=tags)


def log_steps(
    client: MlflowClient,
    run_id: str,
    steps: Iterable[tuple[int, Mapping[str, float]]],
    *,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Log several steps' finite numbers as metrics, with ``params`` and ``tags``, in as few
    requests as MLflow's limits allow (each request fills up with metrics the room its params and
    tags leave).

    Args:
        client: the tracking client.
        run_id: the run.
        steps: ``(step, {metric: value})`` pairs; values that are not finite numbers are dropped.
        params: logged with the first batches, :data:`MAX_PARAMS_PER_BATCH` per request (a
            re-logged equal value is fine).
        tags: set on the run with the first batch (at most :data:`MAX_TAGS_PER_BATCH`).
    """
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), now, step)
        for step, values in steps
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    run_tags = [RunTag(k, v) for k, v in (tags or {}).items()]
    if len(run_tags) > MAX_TAGS_PER_BATCH:
        raise ValueError(f"at most {MAX_TAGS_PER_BATCH} tags per call, got {len(run_tags)}")
    run_params = [Param(k, v) for k, v in (params or {}).items()]
    while metrics or run_params or run_tags:
        batch_params = run_params[:MAX_PARAMS_PER_BATCH]
        room = MAX_METRICS_PER_BATCH - len(batch_params) - len(run_tags)  # counted together
        client.log_batch(run_id, metrics=metrics[:room], params=batch_params, tags=run_tags)
        metrics, run_params, run_tags = metrics[room:], run_params[MAX_PARAMS_PER_BATCH:], []


@contextlib.contextmanager
def using_tracking_uri(uri: str | None = None) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` (if given) within the block; on exit, put MLflow's
    process-wide tracking URI and ``MLFLOW_TRACKING_URI`` back as they were.

    ``mlflow.set_tracking_uri`` also sets the variable, so a trial's model logging or a job's
    model registration would otherwise leave the process (and every process it starts later)
    pointed at their server.
    """
    saved_uri = mlflow_uri_state._tracking_uri
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        if uri is not None:
            mlflow.set_tracking_uri(uri)
        yield
    finally:
        mlflow_uri_state.set_tracking_uri(saved_uri)  # type: ignore[arg-type]  # None: unset
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def find_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> Run | None:
    """The oldest live run of the experiment carrying all ``tags``, or ``None``."""
    clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs(
        [experiment_id], filter_string=clauses, order_by=["attributes.start_time ASC"]
    )
    return runs[0] if runs else None


def experiment_of(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created (or restored from deletion) if needed."""
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


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def model_name(spec: SearchSpec) -> str:
    """Registered model name of a job: ``strsearch-<model>-<dataset>-s<target %>``."""
    return f"strsearch-{spec.model}-{spec.dataset}-s{100 * spec.target_sparsity:g}"
