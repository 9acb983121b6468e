"""The Ray Tune function trainable: one training run per trial (STR, or a baseline of a comparison).

It trains with the str_core :class:`~str_core.train.Trainer` and reports every epoch through a
trainer callback: ``tune.report`` with the epoch's metrics (accuracy, loss, sparsity, FLOPs, λ,
``s_init``, per-layer sparsity and threshold) and the trainer's checkpoint. A trial that Ray
restarts (node lost, experiment restored) continues from ``tune.get_checkpoint()`` instead of
starting over; the trainer's resume is exact, so the result is the same as without the restart.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from str_core.pruning import pruning_callbacks
from str_core.train import LAST_CHECKPOINT, Trainer, build_run
from strsearch.spec import SearchSpec
from workers import heap
from workers.cpus import trial_threads
from workers.data_parallel import train_trial_data_parallel
from workers.reporting import EpochReporter, band_rule, trial_callbacks
from workers.tracking import trial_trackers
from workers.tracking.run_marker import RunMarker
from workers.trial_config import Row, method_trial, trial_config


class TuneReporter(EpochReporter):
    """Sends each epoch's report to Tune with the trainer's checkpoint (single-process trials)."""

    def send(self, trainer: Trainer, report: dict[str, Any]) -> None:
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(self.checkpoint_dir)))


def train_trial(config: dict[str, Any]) -> None:
    """Train one trial.

    A search trial's ``config`` holds ``spec`` (a SearchSpec as JSON), ``weight_decay`` and
    ``s_init`` (chosen by the searcher); a comparison trial's holds ``spec`` and ``row`` (a
    :class:`~workers.trial_config.Row`: method, seed, λ, ``s_init`` or budget). With
    ``tracking`` the trial also logs to its MLflow run (:mod:`workers.tracking`). With
    ``resources.workers_per_trial`` > 1 a search trial trains data-parallel with Ray Train
    (:mod:`workers.data_parallel`)."""
    heap.freeze_startup_heap()
    spec = SearchSpec.model_validate(config["spec"])
    if "row" in config:
        row = Row.from_dict(config["row"])
        trial = method_trial(spec, row)
        extra: dict[str, Any] = {"weight_decay": row.weight_decay, "seed": row.seed}
        if row.s_init is not None:
            extra["s_init"] = row.s_init
        extra["method"] = row.method
        reporter_rule = None
    else:
        if spec.resources.workers_per_trial > 1:
            train_trial_data_parallel(config)
            return
        weight_decay, s_init = float(config["weight_decay"]), float(config["s_init"])
        trial = trial_config(spec, weight_decay=weight_decay, s_init=s_init)
        extra = {"weight_decay": weight_decay, "s_init": s_init}
        reporter_rule = band_rule(spec, trial.train.epochs)
    torch.set_num_threads(trial_threads(spec.resources))

    workdir = Path(tempfile.mkdtemp(prefix="strsearch-trial-"))
    try:
        restored = tune.get_checkpoint()
        if restored is not None:
            with restored.as_directory() as src:
                shutil.copy(Path(src) / LAST_CHECKPOINT, workdir / LAST_CHECKPOINT)
        run = build_run(trial.model, trial.data, trial.train, trial.str_config, prune=trial.prune)
        reporter = TuneReporter(workdir, extra, reporter_rule, spec.target_sparsity)
        pruners = pruning_callbacks(trial.prune) if trial.prune is not None else []
        storage = tune.get_context().get_storage()
        marker = RunMarker.in_folder(storage.storage_filesystem, storage.trial_fs_path)
        trackers = trial_trackers(config, tune.get_context().get_trial_id(), marker)
        trainer = Trainer(
            run.model,
            trial.train,
            run.data,
            callbacks=trial_callbacks(reporter, *pruners, *trackers),
            checkpoint_dir=workdir,
        )
        trainer.fit(resume=restored is not None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
