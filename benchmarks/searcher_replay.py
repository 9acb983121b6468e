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

What it is for: trying a change to the searcher (``workers/_bracket.py``) on many targets in
minutes, then confirming it with ``search_efficiency`` through Ray. Two-at-a-time searches depend
on which trial finishes first and cannot be replayed.

Usage::

    .venv/bin/python -m benchmarks.searcher_replay                  # 2 datasets x 4 targets
    .venv/bin/python -m benchmarks.searcher_replay --targets 0.85 0.92 0.97 --datasets mnist1d
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
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


@dataclass(frozen=True)
class Replay:
    """One replayed search."""

    dataset: str
    target: float
    method: str
    landed: bool
    steps: list[Step]

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.steps)


def train_trajectory(dataset: str, weight_decay: float, epochs: int) -> list[float]:
    """Train ``search_efficiency``'s trial at ``weight_decay`` for ``epochs`` epochs (one thread,
    as a one-CPU trial) and return its sparsity after every epoch."""
    spec = bench_spec(dataset, 0.9, epochs=epochs, budget=BUDGET)
    trial = trial_config(spec, weight_decay=weight_decay, s_init=S_INIT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = build_run(trial.model, trial.data, trial.train, trial.str_config)
        history = Trainer(run.model, trial.train, run.data).fit().history
    finally:
        torch.set_num_threads(threads)
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
        if step.band_stop is None and abs(step.sparsity - target) <= spec.tolerance:
            return Replay(dataset, target, method, True, steps)
    return Replay(dataset, target, method, False, steps)


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
            f"{s.weight_decay:.4g}→{s.sparsity:.2%}{marks[s.band_stop]}"
            + (f"@{s.epochs}" if s.band_stop else "")
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
    for method in METHODS:
        rows = [r for r in replays if r.method == method]
        if not rows:
            continue
        epochs = sum(r.epochs for r in rows)
        ratio = f"{epochs / bisection:.2f}" if bisection else "–"
        lines.append(
            f"| {method} | {sum(r.landed for r in rows)}/{len(rows)} | "
            f"{sum(len(r.steps) for r in rows)} | {epochs} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_grid_arguments(parser, list(METHODS))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="recorded trajectories")
    parser.add_argument("--json", type=Path, help="also write every replay here")
    parser.add_argument(
        "--fall-margin",
        type=float,
        default=DEFAULT_MARGINS.fall_margin,
        help="the early-stop rule's fall margin (to try other values)",
    )
    args = parser.parse_args(argv)
    cache = TrajectoryCache(args.cache, args.epochs)
    margins = replace(DEFAULT_MARGINS, fall_margin=args.fall_margin)
    replays = []
    for dataset in args.datasets:
        for target in args.targets:
            for method in args.methods:
                r = replay(method, dataset, target, cache, epochs=args.epochs, margins=margins)
                replays.append(r)
                print(f"{dataset} {target:g} {method}: {len(r.steps)} trials, {r.epochs} epochs",
                      file=sys.stderr, flush=True)  # fmt: skip
    print(table(replays))
    print()
    print(totals(replays))
    print(f"\n{cache.trained} trainings added to {args.cache}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in replays], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
