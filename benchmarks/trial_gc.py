"""What garbage collection costs a trial process, with and without its start-up heap frozen.

``workers.trainable.train_trial`` starts with :func:`workers.heap.freeze_startup_heap`: the
objects the process holds before its first trial (the modules of torch, Ray, MLflow) are moved
to the collector's permanent generation, so that full collections no longer scan them. This
benchmark runs real Tune trials of the default digits recipe in fresh Ray worker processes
(``reuse_actors=False``), round by round and arm by arm (``frozen``: as shipped; ``unfrozen``:
the freeze switched off in the trial process), and records in each trial process every
collection the trial set off (``gc.callbacks``) and the trial's wall time.

Usage::

    .venv/bin/python -m benchmarks.trial_gc                      # 4 rounds, 2 trials per arm
    .venv/bin/python -m benchmarks.trial_gc --rounds 6 --epochs 30 --json runs/trial_gc.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from strsearch.spec import SearchSpec
from workers import heap, trainable

ARMS = ("frozen", "unfrozen")
LAMBDAS = (5e-3, 2e-2)
"""The λ of a round's trials (one trial each, run two at a time)."""


@dataclass(frozen=True)
class TrialGc:
    """One trial process: its collections and its time."""

    arm: str
    round: int
    weight_decay: float
    seconds: float  # the whole trial function
    collections: int
    gc_seconds: float  # all collections during the trial
    full_collections: int
    full_seconds: float
    frozen_objects: int  # in the permanent generation at the trial's end


def gc_trial(config: dict[str, Any]) -> None:
    """Run ``train_trial`` as a search runs it, watching the collector, and write a
    :class:`TrialGc` to ``config["out"]``."""
    config = dict(config)  # Tune's own copy stays as it was
    arm, out, round_ = config.pop("arm"), Path(config.pop("out")), config.pop("round")
    if arm == "unfrozen":
        heap.freeze_startup_heap = lambda: False
    events: list[tuple[int, float]] = []
    began = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            events.append((info["generation"], time.perf_counter() - began[0]))

    gc.callbacks.append(watch)
    started = time.perf_counter()
    try:
        trainable.train_trial(config)
    finally:
        seconds = time.perf_counter() - started
        gc.callbacks.remove(watch)
    full = [s for generation, s in events if generation == 2]
    record = TrialGc(
        arm=arm,
        round=round_,
        weight_decay=float(config["weight_decay"]),
        seconds=seconds,
        collections=len(events),
        gc_seconds=sum(s for _, s in events),
        full_collections=len(full),
        full_seconds=sum(full),
        frozen_objects=gc.get_freeze_count(),
    )
    trial_id = tune.get_context().get_trial_id()
    (out / f"{trial_id}.json").write_text(json.dumps(asdict(record)))


def run_arm(arm: str, round_: int, epochs: int, folder: Path) -> list[TrialGc]:
    """One Tune run of the :data:`LAMBDAS` trials, each in a fresh worker process."""
    spec = SearchSpec.parse(
        {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9,
         "training": {"epochs": epochs}}
    )  # fmt: skip
    out = folder / f"{arm}-{round_}"
    out.mkdir(parents=True)
    space = {
        "spec": spec.model_dump(mode="json"),
        "s_init": -5.0,
        "weight_decay": tune.grid_search(list(LAMBDAS)),
        "arm": arm,
        "round": round_,
        "out": str(out),
    }
    tuner = tune.Tuner(
        tune.with_resources(gc_trial, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=False),
        run_config=tune.RunConfig(name=out.name, storage_path=str(folder / "storage"), verbose=0),
    )
    grid = tuner.fit()
    if grid.errors:
        raise RuntimeError(f"{arm} round {round_}: {grid.errors[0]}")
    return [TrialGc(**json.loads(p.read_text())) for p in sorted(out.glob("*.json"))]


def run_benchmark(rounds: int, epochs: int) -> list[TrialGc]:
    """``rounds`` rounds of both arms, the arms' order alternating round by round."""
    records: list[TrialGc] = []
    with tempfile.TemporaryDirectory(prefix="trial-gc-") as tmp:
        for round_ in range(rounds):
            arms = ARMS if round_ % 2 == 0 else ARMS[::-1]
            for arm in arms:
                got = run_arm(arm, round_, epochs, Path(tmp))
                records += got
                print(
                    f"round {round_} {arm}: gc " + ", ".join(f"{r.gc_seconds:.2f} s" for r in got),
                    file=sys.stderr,
                    flush=True,
                )
    return records


def table(records: Sequence[TrialGc]) -> str:
    """Per arm: trials, and the medians per trial process."""
    lines = [
        "| arm | trials | gc s | full collections | full s | trial s | frozen objects |",
        "|---|---|---|---|---|---|---|",
    ]
    median = statistics.median
    for arm in ARMS:
        rows = [r for r in records if r.arm == arm]
        if not rows:
            continue
        lines.append(
            f"| {arm} | {len(rows)} | {median(r.gc_seconds for r in rows):.3f} | "
            f"{median(r.full_collections for r in rows):g} | "
            f"{median(r.full_seconds for r in rows):.3f} | "
            f"{median(r.seconds for r in rows):.2f} | "
            f"{median(r.frozen_objects for r in rows):.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial")
    parser.add_argument("--json", type=Path, help="also write every trial's record here")
    args = parser.parse_args(argv)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        records = run_benchmark(args.rounds, args.epochs)
    finally:
        if started:
            ray.shutdown()
    print(table(records))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in records], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
