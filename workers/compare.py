"""``run_comparison``: several methods at one target, each with the same recipe and seeds.

A comparison job (``spec.methods`` set) runs in two phases, each a Ray Tune experiment under the
job's storage folder, so an interrupted comparison resumes where it stopped:

1. each searched STR method (``str`` and its ablations ``str_l1``, ``str_exp``,
   ``str_channel``) gets its own λ search (:func:`workers.search.run_search`, experiment named
   after the method) at the first seed; its best trial is that method's first-seed model;
2. one experiment named ``methods`` trains the rest as a grid of rows (method, seed): the STR
   methods again at their found λ for the other seeds, and the pruning baselines once per seed at
   exactly the target (``str_to_gmp`` / ``str_to_dnw`` with the per-layer budget the ``str``
   search learnt).

The result aggregates one row per method (mean ± std over seeds); with tracking on, the job's
MLflow run holds the table and an accuracy-vs-FLOPs plot, the searches are nested runs under it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

from ray import tune

from str_core.layers import prunable_layers
from str_core.models import create_model
from strsearch.spec import STR_METHODS, SearchSpec
from workers.comparison import ComparisonResult, method_rows
from workers.cpus import resolve_cpus
from workers.data_parallel import trial_resources
from workers.experiment_state import prepare_resume
from workers.progress import Fanout, SearchListener, listening
from workers.result import SearchResult, TrialSummary
from workers.search import (
    check_spec,
    ensure_ray,
    experiment_name,
    run_config,
    run_search,
    storage_uri,
    trial_summaries,
)
from workers.tracking import JobTracker, TrackingSettings
from workers.trainable import train_trial
from workers.trial_config import Row, variant_spec

METHODS_EXPERIMENT = "methods"


def check_comparison(spec: SearchSpec) -> None:
    """:func:`workers.search.check_spec`, and a given ``comparison.budget`` names exactly the
    model's prunable layers.

    Raises:
        KeyError, ValueError, FileNotFoundError: as :func:`check_spec`; ``ValueError`` for a
            budget naming unknown layers or missing some.
    """
    check_spec(spec)
    budget = spec.comparison.budget
    if not budget or not {"budget_gmp", "budget_dnw"} & set(spec.methods or ()):
        return
    names = [name for name, _ in prunable_layers(create_model(spec.model))]
    unknown = sorted(set(budget) - set(names))
    missing = [n for n in names if n not in budget]
    if unknown or missing:
        raise ValueError(
            f"comparison.budget must name every prunable layer of {spec.model!r} and no other: "
            f"unknown {unknown[:8]}, missing {missing[:8]}"
        )


def comparison_rows(spec: SearchSpec, searches: dict[str, SearchResult]) -> list[Row]:
    """The rows of the ``methods`` experiment: every (method, seed) not yet trained by a search.

    An STR method whose search produced no model at all has no rows (its table row reports the
    failure); ``str_to_*`` rows take the budget of the ``str`` search's best trial.
    """
    seeds = spec.comparison.seeds
    rows: list[Row] = []
    for method in spec.methods or ():
        if method in STR_METHODS:
            best = searches[method].best
            if best is None:
                continue
            rows += [Row(method, s, best.weight_decay, s_init=best.s_init) for s in seeds[1:]]
            continue
        budget = None
        if method.startswith("str_to_"):
            best = searches["str"].best
            if best is None or not best.budget:
                continue
            budget = dict(best.budget)
        rows += [Row(method, s, spec.comparison.weight_decay, budget=budget) for s in seeds]
    return rows


def run_comparison(
    spec: SearchSpec,
    *,
    storage_path: str | Path | None = None,
    address: str | None = None,
    name: str | None = None,
    resume: bool = True,
    listener: SearchListener | None = None,
    tracking: TrackingSettings | None = None,
    job_id: str | None = None,
) -> ComparisonResult:
    """Train every method of ``spec.methods`` at the target and compare them.

    Arguments as for :func:`workers.search.run_search`; the experiments live in
    ``<storage>/<name>/<method>`` (searches) and ``<storage>/<name>/methods``.

    Raises:
        ValueError: ``spec`` is not a comparison (``methods`` unset); and as
            :func:`check_comparison`.
    """
    if spec.methods is None:
        raise ValueError("spec.methods is not set: this is a search, run it with run_search")
    check_comparison(spec)
    ensure_ray(address)
    storage = storage_uri(storage_path)
    name = name or experiment_name(spec)
    if not resume and Path(storage, name).exists() and "://" not in storage:
        name = f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    root = f"{storage}/{name}"
    settings = tracking or TrackingSettings()
    job_id = job_id or f"{name}-{hashlib.sha256(root.encode()).hexdigest()[:6]}"
    job = None
    if settings.enabled:
        job = JobTracker.open(spec, job_id, settings, method="comparison")
    try:
        searches: dict[str, SearchResult] = {}
        for method in spec.methods:
            if method not in STR_METHODS:
                continue
            searches[method] = run_search(
                variant_spec(spec, method),
                storage_path=root,
                address=address,
                name=method,
                listener=listener,
                tracking=dataclasses.replace(settings, register=False),
                job_id=f"{job_id}-{method}",
                method=method,
                parent_run_id=None if job is None else job.run_id,
            )
        fixed = _train_rows(spec, comparison_rows(spec, searches), root, listener, job)
        result = _summarise(spec, searches, fixed, root)
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
    job.finish_comparison(result)
    return dataclasses.replace(result, mlflow_run_url=job.run_url())


def _train_rows(
    spec: SearchSpec,
    rows: list[Row],
    root: str,
    listener: SearchListener | None,
    job: JobTracker | None,
) -> list[TrialSummary]:
    """Train the rows in one Tune experiment (resumed if it exists); their summaries."""
    if not rows:
        return []
    path = f"{root}/{METHODS_EXPERIMENT}"
    spec = resolve_cpus(spec)
    trainable = tune.with_resources(train_trial, trial_resources(spec.resources))
    if prepare_resume(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        param_space: dict[str, Any] = {
            "spec": spec.model_dump(mode="json"),
            "row": tune.grid_search([row.to_dict() for row in rows]),
        }
        if job is not None:
            param_space["tracking"] = job.tracking.to_dict()
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.search.parallel_trials, reuse_actors=True
            ),
            run_config=run_config(METHODS_EXPERIMENT, root, relay=path),
        )
    listeners = [x for x in (listener, job) if x is not None]
    with listening(path, Fanout(listeners)):
        grid = tuner.fit()
    return trial_summaries(spec, grid)


def _summarise(
    spec: SearchSpec,
    searches: dict[str, SearchResult],
    fixed: list[TrialSummary],
    root: str,
) -> ComparisonResult:
    first_seed = spec.comparison.seeds[0]
    compared = [
        dataclasses.replace(search.best, seed=first_seed)
        for search in searches.values()
        if search.best is not None
    ]
    compared += fixed
    trials = [t for search in searches.values() for t in search.trials] + fixed
    landed = [t for t in compared if t.status == "landed"]
    best = max(landed, key=lambda t: t.val_acc or 0.0) if landed else None
    return ComparisonResult(
        target=spec.target_sparsity,
        tolerance=spec.tolerance,
        methods=list(spec.methods or ()),
        table=method_rows(spec.methods or (), compared),
        trials=trials,
        searches=searches,
        experiment_path=root,
        best=best,
        compared=[t.trial_id for t in compared],
    )


def run_job(spec: SearchSpec, **options: Any) -> SearchResult | ComparisonResult:
    """Run ``spec`` as what it is: a comparison when ``spec.methods`` is set, else a search
    (``options`` as for :func:`run_comparison`)."""
    if spec.is_comparison:
        return run_comparison(spec, **options)
    return run_search(spec, **options)
