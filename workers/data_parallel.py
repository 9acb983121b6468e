"""Data-parallel trials: one Tune trial that trains in several processes with Ray Train.

With ``resources.workers_per_trial`` > 1 a trial is a light Tune function (the *driver*) that runs
a Ray Train ``TorchTrainer`` (Train V2, the default in Ray 2.60): ``workers_per_trial`` workers,
each with ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs, in a ``torch.distributed`` group
(NCCL on GPUs, gloo on CPUs). Every worker runs the same str_core :class:`~str_core.train.Trainer`,
which detects the group and trains data-parallel (global batch = ``training.batch_size``).

One epoch travels like this:

1. every worker ends the epoch with the same metrics (the trainer reduces them) and calls
   ``ray.train.report``; rank 0 attaches its ``last.pt``, which Train persists to the run's storage;
2. the Train controller, which Ray places on the driver's node, calls :class:`EpochRelay`: it
   copies that checkpoint into the driver's local staging folder (before Train can delete it for
   the next one) and queues ``(metrics, folder)``;
3. the driver takes it off the queue and calls ``tune.report(metrics, checkpoint=folder)``: Tune,
   the searcher and the listeners see exactly what a single-process trial reports, plus
   ``world_size``.

Resume follows the single-process contract: the Tune checkpoint is the source of truth. A restarted
trial passes ``tune.get_checkpoint()`` to the workers, each copies ``last.pt`` and resumes. The
Train run's own storage (``<trial folder>/train``) is scratch: it is wiped before each attempt
(so Train never restores a half-written run of its own) and after a finished one. Failures are
retried by Tune (``FailureConfig`` of the experiment), not by Train.

Resources: Ray Train reserves the workers' CPUs/GPUs itself, so the Tune trial asks only for a
token (:data:`DRIVER_RESOURCES`: no CPU, one MiB of memory, since Tune refuses an empty request);
a 2-worker trial at 1 CPU each fits on a 2-CPU machine.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pyarrow.fs  # type: ignore[import-untyped]
import ray
import ray.train
import ray.train.torch
import torch
from ray import tune

# What ``ray.train`` / ``ray.train.torch`` export under Train V2, imported from where they are
# defined so that type checking sees the V2 classes (``ray.train`` picks them at import time).
from ray.train.v2.api.callback import UserCallback
from ray.train.v2.api.config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.v2.torch.torch_trainer import TorchTrainer
from ray.util.queue import Empty, Queue

from str_core.train import LAST_CHECKPOINT, Trainer, build_run
from strsearch.spec import Resources, SearchSpec
from workers import heap
from workers.cpus import reserved_cpus, trial_threads
from workers.reporting import EpochReporter, trial_callbacks
from workers.tracking import trial_trackers
from workers.tracking.run_marker import RunMarker
from workers.trial_config import trial_config

DRIVER_RESOURCES: dict[str, float] = {"cpu": 0.0, "gpu": 0.0, "memory": float(2**20)}
"""Tune resources of a data-parallel trial's driver (the workers reserve theirs via Ray Train)."""

RUN_NAME = "train"
"""Folder of the Ray Train run inside the Tune trial folder (scratch, see the module docstring)."""

_POLL_S = 0.5

HEALTH_CHECK_INTERVAL_S = "0.5"
"""Seconds between the Train controller's polls of its workers (Ray's default is 2). Reports are
collected at the poll, so every epoch would otherwise wait up to 2 s. The environment variable
``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` overrides it."""


def trial_resources(resources: Resources) -> dict[str, float]:
    """What Tune reserves for one trial: everything when single-process, the driver's token when
    data-parallel."""
    if resources.workers_per_trial > 1:
        return dict(DRIVER_RESOURCES)
    return {"cpu": reserved_cpus(resources), "gpu": resources.gpus_per_trial}


# ------------------------------------------------------------------------------------- workers
class TrainReporter(EpochReporter):
    """On every rank: sends each epoch's report to Ray Train (rank 0 attaches the checkpoint; the
    report is a barrier, so every rank must call it). Same report as a single-process trial."""

    def send(self, trainer: Trainer, report: dict[str, Any]) -> None:
        checkpoint = None
        if trainer.rank == 0:
            checkpoint = ray.train.Checkpoint.from_directory(str(self.checkpoint_dir))
        ray.train.report(report, checkpoint=checkpoint)


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker of a data-parallel trial (``torch.distributed`` is initialised by Ray
    Train). ``config`` is the trial's config plus ``restore`` (the Tune checkpoint or ``None``),
    ``trial_id`` and ``run_marker`` (the Tune trial's run mark, for the tracker on rank 0)."""
    heap.freeze_startup_heap()
    spec = SearchSpec.model_validate(config["spec"])
    weight_decay, s_init = float(config["weight_decay"]), float(config["s_init"])
    trial = trial_config(spec, weight_decay=weight_decay, s_init=s_init)
    train_cfg = dataclasses.replace(trial.train, device=str(ray.train.torch.get_device()))
    torch.set_num_threads(trial_threads(spec.resources))

    workdir = Path(tempfile.mkdtemp(prefix="strsearch-worker-"))
    try:
        restore: ray.train.Checkpoint | None = config.get("restore")
        if restore is not None:
            with restore.as_directory() as src:
                shutil.copy(Path(src) / LAST_CHECKPOINT, workdir / LAST_CHECKPOINT)
        run = build_run(trial.model, trial.data, train_cfg, trial.str_config)
        reporter = TrainReporter.for_trial(workdir, spec, weight_decay, s_init, train_cfg.epochs)
        trackers = trial_trackers(config, config["trial_id"], config["run_marker"])
        trainer = Trainer(
            run.model,
            train_cfg,
            run.data,
            callbacks=trial_callbacks(reporter, *trackers),
            checkpoint_dir=workdir,
        )
        trainer.fit(resume=restore is not None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------ controller
class EpochRelay(UserCallback):
    """Runs in the Train controller: hands each report to the driver through ``queue``.

    The checkpoint is copied into ``staging`` (a folder of the driver's node; the controller runs
    there) before this returns, because Train deletes it when the next one is registered.
    """

    def __init__(self, queue: Queue, staging: str) -> None:
        self.queue = queue
        self.staging = staging

    def after_report(
        self,
        run_context: Any,
        metrics: list[dict[str, Any]],
        checkpoint: ray.train.Checkpoint | None,
    ) -> None:
        """Queue rank 0's metrics and a local copy of the checkpoint (``None`` without one)."""
        folder = None
        if checkpoint is not None:
            folder = str(Path(self.staging) / f"epoch-{int(metrics[0]['epoch']):06d}")
            checkpoint.to_directory(folder)
        self.queue.put((dict(metrics[0]), folder))


# ---------------------------------------------------------------------------------- driver
def _wipe(filesystem: pyarrow.fs.FileSystem, path: str) -> None:
    info = filesystem.get_file_info(path)
    if info.type == pyarrow.fs.FileType.Directory:
        filesystem.delete_dir(path)


def _report(metrics: dict[str, Any], folder: str | None) -> None:
    if folder is None:
        tune.report(metrics)
        return
    if not Path(folder).is_dir():
        raise RuntimeError(
            f"the Train controller's checkpoint copy {folder} is not on the driver's node"
        )
    try:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fit_and_relay(trainer: TorchTrainer, queue: Queue) -> None:
    """Run ``trainer.fit()`` in a thread while this (the Tune function's) thread reports what the
    relay queues; re-raise the run's error once everything it reported has been passed on."""
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the Tune thread below
            failure.append(exc)

    thread = threading.Thread(target=fit, name="strsearch-train-run", daemon=True)
    thread.start()
    while True:
        try:
            metrics, folder = queue.get(timeout=_POLL_S)
        except Empty:
            # every report is queued before fit() returns: stop once the run is over and drained
            if not thread.is_alive() and queue.empty():
                break
            continue
        _report(metrics, folder)
    thread.join()
    if failure:
        raise failure[0]


def train_trial_data_parallel(config: dict[str, Any]) -> None:
    """The Tune function of a data-parallel trial (same ``config`` as
    :func:`workers.trainable.train_trial`): launches the Ray Train run and relays its reports.

    Raises:
        RuntimeError: if Ray Train V2 is disabled (``RAY_TRAIN_V2_ENABLED=0``).
        ray.train.TrainingFailedError: if a worker fails (Tune then retries the trial).
    """
    if getattr(ray.train, "UserCallback", None) is not UserCallback:
        raise RuntimeError("data-parallel trials need Ray Train V2 (unset RAY_TRAIN_V2_ENABLED)")
    spec = SearchSpec.model_validate(config["spec"])
    res = spec.resources
    # this process is the trial's alone (no actor reuse); Train passes the value to its controller
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    use_gpu = res.gpus_per_trial > 0
    per_worker = {"CPU": reserved_cpus(res)} | ({"GPU": res.gpus_per_trial} if use_gpu else {})
    storage = tune.get_context().get_storage()
    filesystem = storage.storage_filesystem
    _wipe(filesystem, f"{storage.trial_fs_path}/{RUN_NAME}")

    staging = tempfile.mkdtemp(prefix="strsearch-relay-")
    queue = Queue(actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            **config,
            "restore": tune.get_checkpoint(),
            "trial_id": tune.get_context().get_trial_id(),
            "run_marker": RunMarker.in_folder(filesystem, storage.trial_fs_path),
        },
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=res.workers_per_trial,
            use_gpu=use_gpu,
            resources_per_worker=per_worker,
        ),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=storage.trial_fs_path,
            storage_filesystem=filesystem,
            callbacks=[EpochRelay(queue, staging)],
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    finished = False
    try:
        _fit_and_relay(trainer, queue)
        finished = True
    finally:
        queue.shutdown()
        shutil.rmtree(staging, ignore_errors=True)
        if finished:
            _wipe(filesystem, f"{storage.trial_fs_path}/{RUN_NAME}")
