"""MLflow tracking of searches: the only package of the project that talks to MLflow.

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
A trial's first attempt skips that lookup: a mark in its Tune trial folder tells later attempts
to look. Every call is an ordinary client call against the tracking server; per-epoch metrics go
out in batches at most every 5 s from a sender thread (training does not wait for the server),
split to MLflow's per-request limits.

Which server: ``tracking_uri`` if given, else ``MLFLOW_TRACKING_URI``, else the embedded server
(:mod:`workers.mlflow_server`: ``mlflow server`` with SQLite and local artifacts).

Modules: :mod:`~workers.tracking.common` (settings, tags, batched client calls),
:mod:`~workers.tracking.trial` (a trial's child run, logged by the trial itself),
:mod:`~workers.tracking.run_marker` (the trial's mark) and :mod:`~workers.tracking.job` (the
job's parent run, logged by the driver).
"""

from workers.tracking.common import (
    DEFAULT_EXPERIMENT,
    JOB_TAG,
    KIND_TAG,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_CHARS,
    MAX_PARAMS_PER_BATCH,
    MODEL_URI_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    TrackingSettings,
    TrialTracking,
    find_run,
    log_metrics,
    log_params,
    log_steps,
    model_name,
    spec_params,
)
from workers.tracking.job import JobTracker
from workers.tracking.trial import CONSTANT_METRICS, MODEL_CODE, TrialTracker, trial_trackers

__all__ = [
    "CONSTANT_METRICS",
    "DEFAULT_EXPERIMENT",
    "JOB_TAG",
    "KIND_TAG",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_PER_BATCH",
    "MAX_PARAM_CHARS",
    "MODEL_CODE",
    "MODEL_URI_TAG",
    "PARENT_TAG",
    "TRIAL_TAG",
    "JobTracker",
    "TrackingSettings",
    "TrialTracker",
    "TrialTracking",
    "find_run",
    "log_metrics",
    "log_params",
    "log_steps",
    "model_name",
    "spec_params",
    "trial_trackers",
]
