"""Time that MLflow tracking adds to one trial: the same trial trained with logging off and on.

A search records every trial in its own MLflow run through :class:`workers.tracking.TrialTracker`
(a trainer callback). This benchmark starts a real tracking server
(:func:`workers.mlflow_server.start_server`: ``mlflow server`` with SQLite and a local artifact
root that the trial writes to directly, as the embedded default does, in a temporary folder,
stopped at the end; ``--proxy-artifacts`` makes every file go through the server over HTTP, as
with a shared production server), creates a parent run as a search's driver
would, and for each built-in setup trains one trial of the default recipe (``SearchSpec``
defaults: 30 epochs, batch 128, SGD lr 0.1 cosine; λ = 5e-3, ``s_init`` = −5, seed 0) with
tracking off and on, interleaved (off, on, on, off, …: the order rotates every round) in this
one process.

A trial is built as :func:`workers.trainable.train_trial` builds it, without Ray:
:func:`~workers.trial_config.trial_config`, :func:`~str_core.train.build_run`, torch threads set
to the spec's ``cpus_per_trial``, a :class:`~str_core.train.Trainer` writing its checkpoint to a
fresh folder every epoch, and, when tracking is on, the trial's tracker. The Tune reporter is left
out of both variants (it needs a Ray session), so the trial time here is a little shorter than in
a search and the ratio a little larger. The timed region is the whole trial, from composing its
config to the end of ``fit``, so everything the tracker does (opening its run at the start,
per-epoch metrics with the params in their first batch, waiting for them, budget files, plots
and the two logged models at the end) is inside it.

The tracker is a subclass of ``TrialTracker`` (:mod:`benchmarks._timed_tracker`) that only times its
own work, which splits the added time into phases: ``start`` (the client; the sender thread
opens the run, writing the trial's run mark on a first attempt instead of looking the run up),
``epochs`` (the per-epoch hook: queueing the epoch's metrics and, every 5 s, handing the queue to
the sender thread, the first time with the params), ``flush`` (waiting for that thread at the end),
``plots`` (waiting for the last epochs' metrics with the model's URI tag, the budget CSV/JSON and
the two PNG figures beyond the models' time: two threads send and write them while the models are
saved, and the figures' thread's own time is the ``figures (thread)`` column), ``upload``
(copying those four files), ``models`` (the STR and the densified model created as logged models
of the run, saved with ``mlflow.pytorch`` and linked to the run) and ``end`` (marking the run
finished).
What the medians differ by beyond these phases is ``indirect``: the sender thread and the server
competing with training for the CPU, plus noise.

That competition is also measured directly: the CPU time of the tracker's sender thread
(``thread cpu``) and of the tracking server's processes (``server cpu``, when the benchmark can
see them: a server on this machine) from the trial's start to the start of its end. Their sum
with the own time is ``charged``: what tracking costs the trial at most when the trial's threads
fill the machine's cores, so that every CPU second the thread or the server takes is one that
training waits for. Unlike ``added``, it does not depend on how fast the machine happened to
train in each round, which on a shared 2-core box varies by more than the goal; the verdict
line judges it against the goal (the added wall time where the server's CPU is not known).
``training paired s`` checks the assumption behind it from the other side: the median over
rounds of how much longer the tracked trial's epochs themselves took (their ``epoch_seconds``,
summed) than the same round's untracked trial's.
Before and after every trial the benchmark lists other ``benchmarks.*`` processes, so a table
measured on a busy machine says so.

Arms (``--arms``, in the given order in the first round, rotated by one place each round):
``off``; ``on`` (the tracker as the workers use it); ``no-models`` (the same with
``log_models=False``, which ``TrackingSettings(log_models=False)`` gives). Results and their
reading: ``docs/benchmarks.md``.

Usage::

    .venv/bin/python -m benchmarks.tracking_overhead [--quick] [--repeats N] [--json PATH]
    .venv/bin/python -m benchmarks.tracking_overhead --arms off on no-models   # models' share
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pyarrow.fs  # type: ignore[import-untyped]
import torch
from mlflow.tracking import MlflowClient

from benchmarks._timed_tracker import PHASES, TimedTrialTracker
from benchmarks._tracking_env import machine_state, server_processes, tracking_server
from benchmarks._tracking_summary import (
    ArmSummary,
    TrialTiming,
    format_table,
    goal_report,
    summarize,
)
from str_core.train import Callback, Trainer, TrainResult, build_run
from strsearch.spec import SearchSpec
from workers.cpus import trial_threads
from workers.tracking import (
    JOB_TAG,
    KIND_TAG,
    TrialTracking,
)
from workers.tracking.common import using_tracking_uri
from workers.tracking.run_marker import RunMarker
from workers.trial_config import trial_config

SETUPS: dict[str, tuple[str, str]] = {
    "digits": ("digits_cnn", "digits"),
    "mnist1d": ("mnist1d_cnn", "mnist1d"),
}
"""Setup name -> (model, dataset) of the built-in setups."""

WEIGHT_DECAY = 5e-3
S_INIT = -5.0
TARGET_SPARSITY = 0.9
EXPERIMENT = "tracking-overhead"


def trial_spec(setup: str, epochs: int | None = None, threads: int = 1) -> SearchSpec:
    """The default search spec of a built-in setup (``epochs`` overrides the recipe's 30), its
    trial on ``threads`` threads (the spec's ``cpus_per_trial``)."""
    model, dataset = SETUPS[setup]
    data: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "target_sparsity": TARGET_SPARSITY,
        "resources": {"cpus_per_trial": threads},
    }
    if epochs is not None:
        data["training"] = {"epochs": epochs}
    return SearchSpec.parse(data)


ARMS: dict[str, type[TimedTrialTracker] | None] = {
    "off": None,
    "on": TimedTrialTracker,
    "no-models": TimedTrialTracker,
}
"""Arm name -> tracker class (``None``: tracking off). ``on`` is the tracker as the workers use
it; ``no-models`` the tracker with ``log_models=False`` (what ``TrackingSettings(log_models=False)``
gives: params, metrics, budget files and plots only)."""


@dataclass(frozen=True)
class Job:
    """A parent run that the trials of one benchmark run are logged under, and the processes
    of its server when that runs on this machine."""

    tracking: TrialTracking
    client: MlflowClient
    server_pids: tuple[int, ...] = ()

    @classmethod
    def create(cls, uri: str, experiment: str = EXPERIMENT) -> Job:
        """Create (or reuse) the experiment and a fresh parent run, as a search's driver does,
        and find the server's processes."""
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        job_id = f"tracking-overhead-{uuid.uuid4().hex[:8]}"
        run = client.create_run(
            experiment_id, run_name=job_id, tags={JOB_TAG: job_id, KIND_TAG: "job"}
        )
        tracking = TrialTracking(uri, str(experiment_id), job_id, run.info.run_id)
        return cls(tracking, client, server_processes(uri))


def run_trial(
    spec: SearchSpec, arm: str, job: Job, trial_id: str
) -> tuple[float, TimedTrialTracker | None, TrainResult]:
    """Train one trial as ``workers.trainable.train_trial`` does, without Ray, and time it.

    Args:
        spec: the job's spec (the trial is ``(WEIGHT_DECAY, S_INIT)`` of it).
        arm: a key of :data:`ARMS`.
        job: the parent run the tracked trial logs under.
        trial_id: the trial's id (a new one gives a new child run).

    Returns:
        Wall seconds of the trial, its tracker (``None`` with tracking off), what it trained.
    """
    tracker_class = ARMS[arm]
    threads = torch.get_num_threads()
    started = time.perf_counter()
    trial = trial_config(spec, weight_decay=WEIGHT_DECAY, s_init=S_INIT)
    torch.set_num_threads(trial_threads(spec.resources))
    workdir = Path(tempfile.mkdtemp(prefix="strsearch-trial-"))
    try:
        run = build_run(trial.model, trial.data, trial.train, trial.str_config)
        tracker = None
        if tracker_class is not None:
            tracking = job.tracking
            if arm == "no-models":
                tracking = TrialTracking(**(tracking.to_dict() | {"log_models": False}))
            # the trial's folder is new, as a Tune trial's is on its first attempt
            marker = RunMarker.in_folder(pyarrow.fs.LocalFileSystem(), str(workdir))
            tracker = tracker_class(tracking, trial_id, spec, WEIGHT_DECAY, S_INIT, marker)
            tracker.server_pids = job.server_pids
        callbacks: list[Callback] = [tracker] if tracker is not None else []
        trainer = Trainer(
            run.model, trial.train, run.data, callbacks=callbacks, checkpoint_dir=workdir
        )
        result = trainer.fit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        seconds = time.perf_counter() - started
        torch.set_num_threads(threads)
    return seconds, tracker, result


def time_setup(
    setup: str,
    job: Job,
    *,
    arms: Sequence[str],
    repeats: int,
    epochs: int | None,
    warmup: bool,
    threads: int = 1,
) -> list[TrialTiming]:
    """Train the setup's trial ``repeats`` times per arm, the arms interleaved round by round
    and rotated from round to round, so no arm always runs first or after another.

    Args:
        setup: a key of :data:`SETUPS`.
        job: the parent run of the tracked trials.
        arms: keys of :data:`ARMS`, in the order the first round runs them.
        repeats: timed rounds.
        epochs: epochs per trial (``None``: the recipe's 30).
        warmup: run one untimed round of 2-epoch trials first (repeat ``-1`` in the result).
        threads: the trials' threads.

    Returns:
        One timing per trial, in run order.
    """
    timings = []
    rounds = ([(-1, trial_spec(setup, 2, threads))] if warmup else []) + [
        (r, trial_spec(setup, epochs, threads)) for r in range(repeats)
    ]
    for repeat, spec in rounds:
        turn = max(repeat, 0) % len(arms)  # each arm takes each place in the round in turn
        for arm in [*arms[turn:], *arms[:turn]]:
            trial_id = f"{setup}-{arm}-r{repeat}-{uuid.uuid4().hex[:6]}"
            others = machine_state()["other_benchmarks"]
            seconds, tracker, result = run_trial(spec, arm, job, trial_id)
            final = result.final
            others += machine_state()["other_benchmarks"]
            phases = dict(tracker.seconds) if tracker else dict.fromkeys(PHASES, 0.0)
            timings.append(
                TrialTiming(
                    setup=setup,
                    arm=arm,
                    repeat=repeat,
                    seconds=seconds,
                    phases=phases,
                    sparsity=final.scalars["sparsity"],
                    test_acc=final.scalars["test_acc"],
                    run_id=tracker.run_id if tracker else None,
                    concurrent=tuple(dict.fromkeys(others)),
                    figure_seconds=tracker.figure_seconds if tracker else 0.0,
                    training=sum(m.scalars["epoch_seconds"] for m in result.history),
                    thread_cpu=tracker.thread_cpu if tracker else 0.0,
                    server_cpu=tracker.server_cpu if tracker else 0.0,
                )
            )
            busy = " (another benchmark was running)" if others else ""
            print(
                f"{setup} round {repeat} {arm}: {seconds:.2f} s{busy}",
                file=sys.stderr,
                flush=True,
            )
    return timings


def run_benchmark(
    setups: Sequence[str] = tuple(SETUPS),
    arms: Sequence[str] = ("off", "on"),
    *,
    repeats: int = 3,
    epochs: int | None = None,
    warmup: bool = True,
    tracking_uri: str | None = None,
    threads: int = 1,
) -> tuple[list[ArmSummary], list[TrialTiming]]:
    """Time the arms on each setup against one tracking server.

    Args:
        setups: keys of :data:`SETUPS`.
        arms: keys of :data:`ARMS`; must include ``off`` (the baseline of the ratios).
        repeats: timed trials per arm and setup.
        epochs: epochs per trial (``None``: the recipe's 30).
        warmup: one untimed round of 2-epoch trials per setup first.
        tracking_uri: an existing server; ``None`` starts one for the run and stops it after.
        threads: the trials' threads (1: a trial of two at a time; the machine's CPUs, up to 4:
            one trial at a time, the default since 2026-12-06).

    Returns:
        The summaries (one per setup and arm) and every trial's timing.

    Raises:
        ValueError: for an unknown setup or arm, no ``off`` arm, or ``repeats`` < 1.
    """
    unknown = sorted(set(setups) - set(SETUPS)) + sorted(set(arms) - set(ARMS))
    if unknown or "off" not in arms or repeats < 1:
        raise ValueError(
            f"need setups from {sorted(SETUPS)}, arms from {sorted(ARMS)} including 'off', "
            f"repeats >= 1; got unknown {unknown}, arms {list(arms)}, repeats {repeats}"
        )
    timings: list[TrialTiming] = []
    with using_tracking_uri(), tracking_server(tracking_uri) as uri:
        job = Job.create(uri)
        try:
            for setup in setups:
                timings += time_setup(
                    setup,
                    job,
                    arms=arms,
                    repeats=repeats,
                    epochs=epochs,
                    warmup=warmup,
                    threads=threads,
                )
        finally:
            job.client.set_terminated(job.tracking.parent_run_id, "FINISHED")
    return summarize(timings, epochs or trial_spec(setups[0]).training.epochs), timings


def _metadata(argv: Sequence[str]) -> dict[str, Any]:
    return {
        "command": " ".join([".venv/bin/python -m benchmarks.tracking_overhead", *argv]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "weight_decay": WEIGHT_DECAY,
        "s_init": S_INIT,
        "target_sparsity": TARGET_SPARSITY,
        "machine_before": machine_state(),
    }


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tracking_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: digits, 2 epochs, 1 round, no warm-up (times are not meaningful)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the recipe's 30)")
    parser.add_argument("--setup", action="append", choices=sorted(SETUPS), help="repeatable")
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        default=["off", "on"],
        help="tracking arms, in this order in the first round, then rotated (default: off on)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up round")
    parser.add_argument("--tracking-uri", help="use this server instead of starting one")
    parser.add_argument(
        "--proxy-artifacts",
        action="store_true",
        help="start the server with artifacts uploaded over HTTP (as to a shared server)",
    )
    parser.add_argument("--json", type=Path, help="write summaries, trials and metadata here")
    parser.add_argument("--threads", type=int, default=1, help="threads of every trial (1)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_args(argv)
    setups = args.setup or (["digits"] if args.quick else list(SETUPS))
    repeats = 1 if args.quick else args.repeats
    epochs = 2 if args.quick and args.epochs is None else args.epochs
    meta = _metadata(argv)
    with tracking_server(args.tracking_uri, proxy_artifacts=args.proxy_artifacts) as uri:
        meta["tracking_uri"] = uri
        meta["server"] = "given" if args.tracking_uri else "started by the benchmark"
        meta["proxy_artifacts"] = args.proxy_artifacts
        summaries, timings = run_benchmark(
            setups,
            args.arms,
            repeats=repeats,
            epochs=epochs,
            warmup=not (args.quick or args.no_warmup),
            tracking_uri=uri,
            threads=args.threads,
        )
    meta["machine_after"] = machine_state()
    print(format_table(summaries))
    for line in goal_report(summaries):
        print(line)
    if args.json:
        payload = {
            "meta": meta,
            "summaries": [asdict(s) for s in summaries],
            "trials": [asdict(t) for t in timings],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    # mlflow.pytorch warns twice per tracked trial that pickled models need trust to load
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    raise SystemExit(main())
