"""Replay sequential searches against recorded training: a searcher's path in seconds.

A search that runs one trial at a time is deterministic on one machine: the searcher proposes a λ
from the results so far, and training at that λ (seed 0, one thread) always ends the same. So
the ``ours-seq``, ``ours-seq-es`` and ``bisection`` columns of :mod:`benchmarks.search_efficiency`
can be replayed without Ray. Each λ is trained once, directly with the str_core ``Trainer`` (the
recipe of ``search_efficiency``'s spec), and its sparsity after every epoch is kept in a cache
file. The searcher's ``suggest`` and ``on_trial_complete`` are then driven in order with those
numbers. With early stopping, the trial's rule (:class:`workers.early_stop.BandStopRule`, built
as a search trial builds it) is applied to the recorded epochs. The rule reads only the sparsity
of the epoch that just finished, so this is exactly the stop the online rule makes.

Two-at-a-time searches (``ours``, ``ours-es``) depend on which trial finishes first, so they
cannot be replayed exactly; :func:`simulate` runs them on the same recorded trajectories with
epochs of slightly different lengths per trial, over several seeds (``--seeds``), and reports
the mean. Unlike the replays, the simulation is a model of the Ray benchmark, not a copy.

What it is for: trying a change to the searcher (``workers/_bracket.py``) on many targets in
minutes, then confirming it with ``search_efficiency`` through Ray.

Usage::

    .venv/bin/python -m benchmarks.searcher_replay                  # 2 datasets x 4 targets
    .venv/bin/python -m benchmarks.searcher_replay --targets 0.85 0.92 0.97 --datasets mnist1d
    .venv/bin/python -m benchmarks.searcher_replay --methods ours ours-es --seeds 10
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from ray.tune.search import Searcher

from benchmarks.search_efficiency import (
    S_INIT,
    BisectionSearcher,
    add_grid_arguments,
    bench_spec,
)
from str_core.train import Trainer, build_run
from strsearch.spec import SearchSpec
from workers.early_stop import DEFAULT_MARGINS, Margins
from workers.reporting import band_rule
from workers.search import build_searcher
from workers.trial_config import trial_config

METHODS = {"ours-seq": False, "ours-seq-es": True, "bisection": False}
"""Replayable methods and whether their trials stop early."""
PARALLEL_METHODS = {"ours": False, "ours-es": True}
"""Two-at-a-time methods, simulated (:func:`simulate`), and whether their trials stop early."""
SLOTS = 2
"""Trials at a time in the simulated methods (``search_efficiency``'s default)."""
BUDGET = 12
DEFAULT_CACHE = Path("runs/searcher_replay_cache.json")

Trajectory = Callable[[str, float], list[float]]
"""``(dataset, λ) →`` the sparsity after every epoch of a full-length trial."""


@dataclass(frozen=True)
class Step:
    """One trial of a replayed search."""

    weight_decay: float
    epochs: int  # epochs it trained (fewer when stopped early)
    sparsity: float  # after its last epoch
    band_stop: str | None  # "above" / "below" when stopped early
    cut: bool = False  # ended because another trial landed (simulated parallel searches)


@dataclass(frozen=True)
class Replay:
    """One replayed search."""

    dataset: str
    target: float
    method: str
    landed: bool
    steps: list[Step]
    seed: int = 0  # of a simulated parallel search

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.steps)


def train_trajectory(
    dataset: str, weight_decay: float, epochs: int, threads: int = 1
) -> list[float]:
    """Train ``search_efficiency``'s trial at ``weight_decay`` for ``epochs`` epochs on
    ``threads`` threads (one: a one-CPU trial; two: one trial at a time on a 2-core machine, the
    default since 2026-12-06) and return its sparsity after every epoch. The thread count changes
    the floating-point results a little, so each count needs its own cache file."""
    spec = bench_spec(dataset, 0.9, epochs=epochs, budget=BUDGET)
    trial = trial_config(spec, weight_decay=weight_decay, s_init=S_INIT)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run = build_run(trial.model, trial.data, trial.train, trial.str_config)
        history = Trainer(run.model, trial.train, run.data).fit().history
    finally:
        torch.set_num_threads(previous)
    return [float(m.scalars["sparsity"]) for m in history]


class TrajectoryCache:
    """Recorded trajectories in a JSON file, keyed by dataset, epochs and λ; a missing one is
    trained (``train``) and written at once, so an interrupted replay loses nothing."""

    def __init__(
        self,
        path: Path,
        epochs: int,
        train: Callable[[str, float, int], list[float]] = train_trajectory,
    ) -> None:
        self.path, self.epochs, self.train = path, epochs, train
        self.data: dict[str, list[float]] = json.loads(path.read_text()) if path.exists() else {}
        self.trained = 0

    def __call__(self, dataset: str, weight_decay: float) -> list[float]:
        key = f"{dataset}/{self.epochs}/{weight_decay:.6g}"
        if key not in self.data:
            self.data[key] = self.train(dataset, weight_decay, self.epochs)
            self.trained += 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=0))
        return self.data[key]


def make_searcher(method: str, spec: SearchSpec) -> Searcher:
    """The searcher ``search_efficiency`` gives ``method``."""
    if method == "bisection":
        window = (spec.search.lambda_min, spec.search.lambda_max)
        return BisectionSearcher(spec.target_sparsity, spec.tolerance, window)
    return build_searcher(spec)


def replay(
    method: str,
    dataset: str,
    target: float,
    trajectory: Trajectory,
    *,
    epochs: int,
    margins: Margins = DEFAULT_MARGINS,
) -> Replay:
    """Drive ``method``'s searcher one trial at a time until a trial lands or it gives up.

    A trial's result is its recorded sparsity after its last epoch; with early stopping the
    rule (with ``margins``) may end it sooner, and then it reports the side of the band and the
    rule's estimate of its final sparsity, as :func:`workers.reporting.epoch_report` does.
    """
    spec = bench_spec(dataset, target, epochs=epochs, budget=BUDGET, early_stopping=METHODS[method])
    searcher = make_searcher(method, spec)
    steps: list[Step] = []
    for i in range(BUDGET):
        trial_id = f"t{i}"
        suggestion = searcher.suggest(trial_id)
        if not isinstance(suggestion, dict):
            break
        weight_decay = float(suggestion["weight_decay"])
        step, result = _trial(trajectory(dataset, weight_decay), spec, weight_decay, margins)
        steps.append(step)
        searcher.on_trial_complete(trial_id, result)
        if _landed(step, spec):
            return Replay(dataset, target, method, True, steps)
    return Replay(dataset, target, method, False, steps)


def simulate(
    method: str,
    dataset: str,
    target: float,
    trajectory: Trajectory,
    *,
    epochs: int,
    seed: int,
    jitter: float = 0.1,
    margins: Margins = DEFAULT_MARGINS,
) -> Replay:
    """Simulate a search with :data:`SLOTS` trials at a time, as Tune runs it.

    Each trial's epochs last ``1 ± jitter`` time units (drawn per trial with ``seed``), so which
    of two concurrent trials finishes first varies with the seed, as it does between real runs.
    A free slot asks the searcher for a trial (none when it says wait); finished trials reach it
    in the order they finish; when one lands, the others stop and count the epochs they
    completed, as with ``search_efficiency``'s stopper.
    """
    early_stopping = PARALLEL_METHODS[method]
    spec = bench_spec(
        dataset, target, epochs=epochs, budget=BUDGET, early_stopping=early_stopping, parallel=SLOTS
    )
    searcher = make_searcher(method, spec)
    rng = random.Random(seed)
    running: list[tuple[float, int, float, float, Step, dict[str, Any]]] = []
    steps: list[Step] = []
    started, now = 0, 0.0

    def fill() -> None:
        nonlocal started
        while len(running) < SLOTS and started < BUDGET:
            suggestion = searcher.suggest(f"t{started}")
            if not isinstance(suggestion, dict):
                return
            weight_decay = float(suggestion["weight_decay"])
            step, result = _trial(trajectory(dataset, weight_decay), spec, weight_decay, margins)
            pace = rng.uniform(1 - jitter, 1 + jitter)
            heapq.heappush(running, (now + step.epochs * pace, started, now, pace, step, result))
            started += 1

    fill()
    while running:
        now, index, _, _, step, result = heapq.heappop(running)
        steps.append(step)
        searcher.on_trial_complete(f"t{index}", result)
        if _landed(step, spec):
            for _, _, start, pace, other, _ in sorted(running, key=lambda r: r[1]):
                done = int((now - start) / pace + 1e-9)
                steps.append(replace(other, epochs=min(done, other.epochs), cut=True))
            return Replay(dataset, target, method, True, steps, seed)
        fill()
    return Replay(dataset, target, method, False, steps, seed)


def _landed(step: Step, spec: SearchSpec) -> bool:
    """Whether a trial ran to its end inside the band."""
    return step.band_stop is None and abs(step.sparsity - spec.target_sparsity) <= spec.tolerance


def _trial(
    sparsities: Sequence[float], spec: SearchSpec, weight_decay: float, margins: Margins
) -> tuple[Step, dict[str, Any]]:
    rule = band_rule(spec, len(sparsities), margins)
    for epoch, sparsity in enumerate(sparsities, start=1):
        decision = None if rule is None else rule.decide(epoch, sparsity)
        if decision is not None or epoch == len(sparsities):
            result: dict[str, Any] = {
                "sparsity": sparsity,
                "val_acc": 0.0,
                "epoch": epoch,
                "training_iteration": epoch,
            }
            if decision is not None:
                assert rule is not None
                estimate = rule.estimate(epoch, sparsity)
                result |= {"band_stop": decision, "sparsity_estimate": estimate}
            return Step(weight_decay, epoch, sparsity, decision), result
    raise ValueError("a trajectory needs at least one epoch")


def table(replays: Sequence[Replay]) -> str:
    """One row per search: trials, epochs and the path (λ → sparsity, ``↑``/``↓`` when stopped
    early above/below the band)."""
    lines = [
        "| dataset | target | method | landed | trials | epochs | path |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in replays:
        marks = {"above": "↑", "below": "↓", None: ""}
        path = ", ".join(
            f"{s.weight_decay:.4g}→"
            + (f"cut@{s.epochs}" if s.cut else f"{s.sparsity:.2%}{marks[s.band_stop]}")
            + (f"@{s.epochs}" if s.band_stop and not s.cut else "")
            for s in r.steps
        )
        lines.append(
            f"| {r.dataset} | {r.target:g} | {r.method} | {'yes' if r.landed else 'no'} | "
            f"{len(r.steps)} | {r.epochs} | {path} |"
        )
    return "\n".join(lines)


def totals(replays: Sequence[Replay]) -> str:
    """Per method: targets landed, trials, epochs, and epochs relative to bisection."""
    lines = [
        "| method | landed | trials | epochs | epochs / bisection |",
        "|---|---|---|---|---|",
    ]
    bisection = sum(r.epochs for r in replays if r.method == "bisection")
    runs = max((r.seed for r in replays), default=0) + 1  # simulated: the mean over the seeds
    for method in [*METHODS, *PARALLEL_METHODS]:
        rows = [r for r in replays if r.method == method]
        if not rows:
            continue
        share = runs if method in PARALLEL_METHODS else 1
        epochs = sum(r.epochs for r in rows) / share
        ratio = f"{epochs / bisection:.2f}" if bisection else "–"
        lines.append(
            f"| {method} | {sum(r.landed for r in rows)}/{len(rows)} | "
            f"{sum(len(r.steps) for r in rows) / share:g} | {epochs:g} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_grid_arguments(parser, [*METHODS, *PARALLEL_METHODS])
    parser.add_argument(
        "--seeds", type=int, default=5, help="simulated orders of each two-at-a-time search"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="recorded trajectories")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads of a new training (use its own --cache)"
    )
    parser.add_argument("--json", type=Path, help="also write every replay here")
    parser.add_argument(
        "--fall-margin",
        type=float,
        default=DEFAULT_MARGINS.fall_margin,
        help="the early-stop rule's fall margin (to try other values)",
    )
    args = parser.parse_args(argv)
    train = partial(train_trajectory, threads=args.threads)
    cache = TrajectoryCache(args.cache, args.epochs, train)
    margins = replace(DEFAULT_MARGINS, fall_margin=args.fall_margin)
    replays = []
    for dataset in args.datasets:
        for target in args.targets:
            for method in args.methods:
                if method in PARALLEL_METHODS:
                    runs = [
                        simulate(method, dataset, target, cache, epochs=args.epochs, seed=seed,
                                 margins=margins)
                        for seed in range(args.seeds)
                    ]  # fmt: skip
                else:
                    runs = [replay(method, dataset, target, cache, epochs=args.epochs,
                                   margins=margins)]  # fmt: skip
                replays += runs
                epochs = " ".join(str(r.epochs) for r in runs)
                print(f"{dataset} {target:g} {method}: epochs {epochs}", file=sys.stderr,
                      flush=True)  # fmt: skip
    print(table(replays))
    print()
    print(totals(replays))
    print(f"\n{cache.trained} trainings added to {args.cache}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in replays], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
