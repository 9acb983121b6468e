"""``run_search``: a Ray Tune experiment searching λ / ``s_init`` until a trial lands the target.

The experiment is named after the spec's fingerprint and lives under ``storage_path``; running the
same spec again resumes an interrupted experiment (``Tuner.restore``: finished trials are kept,
unfinished ones continue from their last checkpoint, the searcher keeps its state) instead of
starting over; state files a killed driver left truncated are repaired first
(:mod:`workers.experiment_state`). On a multi-node cluster ``storage_path`` must be storage
every node can reach (a shared filesystem mounted at the same path, or an object-store URI such
as ``s3://bucket/path``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from str_core.config import DataConfig
from str_core.data import load_dataset
from str_core.models import get_model_info
from strsearch.spec import SearchSpec
from workers import _bracket
from workers.cpus import resolve_cpus
from workers.data_parallel import trial_resources
from workers.experiment_state import StateBackup, is_local, prepare_resume
from workers.progress import Fanout, ProgressRelay, SearchListener, listening, trial_view
from workers.result import SearchResult, TrialSummary
from workers.searcher import SparsitySearcher
from workers.tracking import JobTracker, TrackingSettings
from workers.trainable import train_trial

DEFAULT_STORAGE = Path("runs") / "search"

# Keeping few checkpoints per trial makes Tune snapshot the experiment after every epoch, which it
# warns about as a possible bottleneck; at our epoch lengths the snapshot is cheap.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Progress is ours to show (``listener``); Tune's newer console output prints its own banner even
# at verbose=0, the legacy reporter stays silent.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def experiment_name(spec: SearchSpec) -> str:
    """A stable, readable experiment name: equal specs share it (and so resume each other)."""
    target = f"{spec.target_sparsity:g}".replace(".", "p")
    return f"{spec.model}-{spec.dataset}-{target}-{spec.fingerprint()}"


def check_spec(spec: SearchSpec) -> None:
    """Check what the spec's schema cannot: names in the registries and model/data compatibility.

    Raises:
        KeyError: unknown model or dataset (the message lists valid names).
        ValueError: the model cannot take the dataset's inputs, or the data is missing/malformed.
        FileNotFoundError: the dataset's folder does not exist.
    """
    info = get_model_info(spec.model)
    data = load_dataset(
        DataConfig(name=spec.dataset, root=spec.data_root, val_fraction=spec.val_fraction)
    )
    if len(info.input_shape) != len(data.input_shape):
        raise ValueError(
            f"model {spec.model!r} takes inputs shaped {info.input_shape} but dataset "
            f"{spec.dataset!r} gives {data.input_shape}"
        )


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Connect to Ray: ``address`` or ``RAY_ADDRESS`` joins a cluster, otherwise start locally."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address is None:
        kwargs |= {"include_dashboard": False, "num_cpus": num_cpus}
    ray.init(address=address, **kwargs)


def storage_uri(storage_path: str | Path | None) -> str:
    """A local folder as an absolute path (default :data:`DEFAULT_STORAGE`); URIs unchanged."""
    raw = str(storage_path or DEFAULT_STORAGE)
    return raw if "://" in raw else str(Path(raw).expanduser().resolve())


def build_searcher(spec: SearchSpec) -> SparsitySearcher:
    """The :class:`SparsitySearcher` of ``spec``: its band, λ window, ``s_init`` lanes, budget,
    and a first trial that leans further towards the target when trials run one at a time."""
    one_at_a_time = spec.search.parallel_trials == 1
    return SparsitySearcher(
        target=spec.target_sparsity,
        tolerance=spec.tolerance,
        lambda_range=(spec.search.lambda_min, spec.search.lambda_max),
        s_inits=spec.search.s_init,
        max_trials=spec.search.max_trials,
        start_pull=_bracket.ONE_AT_A_TIME_PULL if one_at_a_time else _bracket.START_PULL,
    )


def run_search(
    spec: SearchSpec,
    *,
    storage_path: str | Path | None = None,
    address: str | None = None,
    name: str | None = None,
    resume: bool = True,
    listener: SearchListener | None = None,
    tracking: TrackingSettings | None = None,
    job_id: str | None = None,
    method: str = "str",
    parent_run_id: str | None = None,
) -> SearchResult:
    """Search λ (and ``s_init``) with real STR training until a trial lands the target.

    Args:
        spec: the job.
        storage_path: experiment storage (local folder, shared folder or ``scheme://`` URI).
        address: Ray cluster to join; default ``RAY_ADDRESS`` or a local Ray.
        name: experiment name; default :func:`experiment_name`.
        resume: continue an unfinished experiment of the same name if there is one; with
            ``False`` a fresh experiment starts (named with a timestamp if the name is taken).
        listener: receives trial events while the search runs (progress displays).
        tracking: MLflow recording (default: on, to ``MLFLOW_TRACKING_URI`` or the embedded
            server); the job is a parent run, each trial a child run (:mod:`workers.tracking`).
        job_id: names the job's MLflow runs; default the experiment name plus a short hash of
            its storage path, so a resumed search continues its runs and the same spec searched
            in other storage is another job.
        method: the searched STR method's name (a comparison's ablations: ``str_l1``, ...);
            carried in every trial's config and tags.
        parent_run_id: the MLflow run the search's run is nested under (a comparison's).

    Returns:
        Every trial's final metrics and budget, and the best landed trial.

    Raises:
        KeyError, ValueError, FileNotFoundError: from :func:`check_spec`.
    """
    check_spec(spec)
    ensure_ray(address)
    storage = storage_uri(storage_path)
    name = name or experiment_name(spec)
    if not resume and tune.Tuner.can_restore(f"{storage}/{name}"):
        # never mix a fresh experiment's trials into an earlier one's folder
        name = f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    path = f"{storage}/{name}"
    # the experiment is named after the spec as given; its trials get the CPUs resolved here
    trial_spec = resolve_cpus(spec)
    trainable = tune.with_resources(train_trial, trial_resources(trial_spec.resources))
    settings = tracking or TrackingSettings()
    job_id = job_id or f"{name}-{hashlib.sha256(path.encode()).hexdigest()[:6]}"
    job = None
    if settings.enabled:
        job = JobTracker.open(
            trial_spec, job_id, settings, method=method, parent_run_id=parent_run_id
        )
    param_space: dict[str, Any] = {"spec": trial_spec.model_dump(mode="json"), "method": method}
    if job is not None:
        param_space["tracking"] = job.tracking.to_dict()

    if resume and prepare_resume(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        searcher = build_searcher(spec)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.parallel_trials),
                metric="sparsity",
                mode="max",
                num_samples=spec.search.max_trials,
                # a data-parallel trial's actor owns its Ray Train run: never hand it on
                reuse_actors=spec.resources.workers_per_trial == 1,
            ),
            run_config=run_config(name, storage, relay=name),
        )
    listeners = [x for x in (listener, job) if x is not None]
    try:
        with listening(name, Fanout(listeners)):
            grid = tuner.fit()
        result = summarise(spec, grid, path)
    except KeyboardInterrupt:
        if job is not None:
            job.fail("KILLED")
        raise
    except Exception:
        if job is not None:
            job.fail()
        raise
    if job is None:
        return result
    registered = job.finish(result, settings)
    return dataclasses.replace(result, mlflow_run_url=job.run_url(), registered_model=registered)


def run_config(name: str, storage: str, *, relay: str) -> tune.RunConfig:
    """The run config of our experiments: trial events go to the listener registered as
    ``relay`` (:func:`workers.progress.listening`), one retry per trial, a checkpoint kept to
    resume from, and (in a local or shared folder) a backup of the experiment's saved state
    (:mod:`workers.experiment_state`)."""
    callbacks: list[tune.Callback] = [ProgressRelay(relay)]
    if is_local(storage):
        callbacks.append(StateBackup(f"{storage}/{name}"))
    return tune.RunConfig(
        name=name,
        storage_path=storage,
        callbacks=callbacks,
        verbose=0,
        # Two, not one: a driver stopped between persisting a trial's new checkpoint (which
        # deletes the oldest kept one) and saving the experiment state leaves a state that names
        # the previous checkpoint; that one must still exist to resume.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=1),
    )


def summarise(spec: SearchSpec, grid: tune.ResultGrid, path: str) -> SearchResult:
    """Build the :class:`SearchResult` of a finished experiment."""
    trials = trial_summaries(spec, grid)
    return SearchResult.from_trials(spec.target_sparsity, spec.tolerance, trials, path)


def trial_summaries(spec: SearchSpec, grid: tune.ResultGrid) -> list[TrialSummary]:
    """Every trial of a finished experiment, from its config and last reported metrics."""
    trials = []
    for index in range(len(grid)):
        result = grid[index]
        metrics = dict(result.metrics or {})
        trial_id = str(metrics.get("trial_id") or Path(result.path).name)
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        trials.append(
            TrialSummary.from_metrics(
                trial_id,
                trial_view(result.config or {}),
                metrics,
                target=spec.target_sparsity,
                tolerance=spec.tolerance,
                error=error,
                path=result.path,
            )
        )
    return trials
