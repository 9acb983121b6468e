"""The Ray Tune function trainable: one STR training run per trial.

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

from str_core.train import LAST_CHECKPOINT, Trainer, build_run
from strsearch.spec import SearchSpec
from workers.data_parallel import train_trial_data_parallel
from workers.reporting import EpochReporter
from workers.tracking import trial_trackers
from workers.trial_config import trial_config


class TuneReporter(EpochReporter):
    """Sends each epoch's report to Tune with the trainer's checkpoint (single-process trials)."""

    def send(self, trainer: Trainer, report: dict[str, Any]) -> None:
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(self.checkpoint_dir)))


def train_trial(config: dict[str, Any]) -> None:
    """Train one trial. ``config`` holds ``spec`` (a SearchSpec as JSON), ``weight_decay`` and
    ``s_init``; the last two come from the searcher; with ``tracking`` the trial also logs to
    its MLflow run (:mod:`workers.tracking`). With ``resources.workers_per_trial`` > 1
    the trial trains data-parallel with Ray Train (:mod:`workers.data_parallel`)."""
    spec = SearchSpec.model_validate(config["spec"])
    if spec.resources.workers_per_trial > 1:
        train_trial_data_parallel(config)
        return
    weight_decay, s_init = float(config["weight_decay"]), float(config["s_init"])
    trial = trial_config(spec, weight_decay=weight_decay, s_init=s_init)
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_trial)))

    workdir = Path(tempfile.mkdtemp(prefix="strsearch-trial-"))
    try:
        restored = tune.get_checkpoint()
        if restored is not None:
            with restored.as_directory() as src:
                shutil.copy(Path(src) / LAST_CHECKPOINT, workdir / LAST_CHECKPOINT)
        run = build_run(trial.model, trial.data, trial.train, trial.str_config)
        reporter = TuneReporter.for_trial(workdir, spec, weight_decay, s_init, trial.train.epochs)
        trackers = trial_trackers(config, tune.get_context().get_trial_id())
        trainer = Trainer(
            run.model,
            trial.train,
            run.data,
            callbacks=[reporter, *trackers],
            checkpoint_dir=workdir,
        )
        trainer.fit(resume=restored is not None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
