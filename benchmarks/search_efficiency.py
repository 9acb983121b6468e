"""Search efficiency: what each way of choosing λ spends to land a target sparsity.

For every dataset and target the same STR training (the search spec's recipe, ``--epochs`` per
trial, seed 0, ``s_init`` −5) is driven by five searchers through Ray Tune, each with the same
trial budget and the same λ window, and each experiment ends as soon as one trial finishes
within ``target ± tolerance`` (a Tune stopper, identical for all):

- ``ours``: :class:`workers.searcher.SparsitySearcher`, 2 trials at a time;
- ``ours-seq``: the same searcher, one trial at a time;
- ``ours-es``, ``ours-seq-es``: the same two with early stopping (``search.early_stopping``):
  a trial that can no longer land ends early and counts for the searcher as a bound.
  ``ours-seq-es`` is the product default since 2026-12-06;
- ``bisection``: plain bisection in ln λ over the window, one full-length trial at a time;
- ``random``: Tune's random search, λ log-uniform over the window, 2 trials at a time;
- ``tpe``: Optuna's TPE through Tune's ``OptunaSearch`` minimising ``|sparsity − target|``
  (``target_gap``), 2 trials at a time.

Ray gets ``--parallel`` CPUs (2). A trial's CPUs (and PyTorch threads) are the product's default
(:mod:`workers.cpus`): the CPUs shared among the trials that run at once, so a method running one
trial at a time trains each on 2 threads, and one running two at a time each on 1.
``--cpus-per-trial 1`` gives every trial one CPU, as before 2026-12-06. Reported
per method: whether it landed, trials started, training epochs run (all trials, including those
cut short when another landed), wall time, and the landed model's test accuracy.

Usage::

    python -m benchmarks.search_efficiency                      # 2 datasets x 4 targets, ~40 min
    python -m benchmarks.search_efficiency --datasets digits --targets 0.9 --methods ours random
    python -m benchmarks.search_efficiency --report runs/a.json runs/b.json   # tables of saved runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.optuna import OptunaSearch

from strsearch.spec import SearchSpec
from workers.cpus import resolve_cpus
from workers.data_parallel import trial_resources
from workers.search import build_searcher
from workers.trainable import train_trial

MODELS = {"digits": "digits_cnn", "mnist1d": "mnist1d_cnn"}
TARGETS = (0.80, 0.90, 0.95, 0.98)
METHODS = ("ours", "ours-seq", "ours-es", "ours-seq-es", "bisection", "random", "tpe")
SEQUENTIAL = ("ours-seq", "ours-seq-es", "bisection")
S_INIT = -5.0

os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@dataclass(frozen=True)
class Outcome:
    """What one method spent on one (dataset, target)."""

    dataset: str
    target: float
    method: str
    landed: bool
    trials: int
    epochs: int
    wall_s: float
    sparsity: float | None  # of the landed trial, else of the closest one
    test_acc: float | None  # of the landed trial
    lambdas: list[float]  # of every started trial, in start order
    sparsities: list[float]  # their last reported sparsity


class BisectionSearcher(Searcher):
    """Plain bisection in ``ln λ``: one trial at a time at the middle of the open interval.

    A result above the band moves the upper end, one below moves the lower end. When the
    interval has shrunk to within 1% of an end of the starting window without a landing, that
    end is pushed out by a factor 10 (the target lies outside the window).
    """

    def __init__(self, target: float, tolerance: float, window: tuple[float, float]) -> None:
        super().__init__(metric="sparsity", mode="max")
        self.target, self.tolerance = target, tolerance
        self.lo, self.hi = (math.log(v) for v in window)
        self.pending: dict[str, float] = {}
        self.landed = False

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if self.landed:
            return Searcher.FINISHED
        if self.pending:
            return None
        x = (self.lo + self.hi) / 2
        self.pending[trial_id] = x
        return {"weight_decay": float(f"{math.exp(x):.4g}"), "s_init": S_INIT}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        x = self.pending.pop(trial_id, None)
        sparsity = None if result is None else result.get("sparsity")
        if x is None or error or not isinstance(sparsity, float) or not math.isfinite(sparsity):
            return
        if abs(sparsity - self.target) <= self.tolerance:
            self.landed = True
        elif sparsity > self.target:
            self.hi = x
            if x - self.lo < math.log(1.01):
                self.lo -= math.log(10)
        else:
            self.lo = x
            if self.hi - x < math.log(1.01):
                self.hi += math.log(10)


class LandedStopper(tune.Stopper):
    """Ends the experiment once a trial has finished all its epochs within the band."""

    def __init__(self, target: float, tolerance: float, epochs: int) -> None:
        self.target, self.tolerance, self.epochs = target, tolerance, epochs
        self.landed = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        sparsity = result.get("sparsity")
        if result.get("epoch") == self.epochs and isinstance(sparsity, float):
            self.landed = self.landed or abs(sparsity - self.target) <= self.tolerance
        return False

    def stop_all(self) -> bool:
        return self.landed


def bench_spec(
    dataset: str,
    target: float,
    *,
    epochs: int,
    budget: int,
    early_stopping: bool = False,
    parallel: int = 1,
    cpus: float | None = None,
) -> SearchSpec:
    """The search spec every method shares for one (dataset, target): ``parallel`` trials at a
    time with ``cpus`` each (default: the product's, :mod:`workers.cpus`)."""
    return SearchSpec.parse(
        {
            "model": MODELS[dataset],
            "dataset": dataset,
            "target_sparsity": target,
            "training": {"epochs": epochs},
            "search": {
                "max_trials": budget,
                "s_init": [S_INIT],
                "early_stopping": early_stopping,
                "parallel_trials": parallel,
            },
            "resources": {"cpus_per_trial": cpus},
        }
    )


def _trial(config: dict[str, Any], spec: dict[str, Any]) -> None:
    """:func:`workers.trainable.train_trial` with the spec passed beside the searched values."""
    train_trial({"s_init": S_INIT, **config, "spec": spec})


def _search_alg(
    method: str, spec: SearchSpec, parallel: int
) -> tuple[SearchAlgorithm | Searcher, dict[str, Any]]:
    window = (spec.search.lambda_min, spec.search.lambda_max)
    if method.startswith("ours"):
        return ConcurrencyLimiter(build_searcher(spec), max_concurrent=parallel), {}
    if method == "bisection":
        return BisectionSearcher(spec.target_sparsity, spec.tolerance, window), {}
    space = {"weight_decay": tune.loguniform(*window)}
    if method == "random":
        return tune.search.BasicVariantGenerator(random_state=0, max_concurrent=parallel), space
    if method == "tpe":
        optuna = OptunaSearch(metric="target_gap", mode="min", seed=0)
        return ConcurrencyLimiter(optuna, max_concurrent=parallel), space
    raise ValueError(f"unknown method {method!r}")


def run_method(method: str, dataset: str, target: float, args: argparse.Namespace) -> Outcome:
    """Run one method's experiment to its first landing (or its trial budget)."""
    sequential = method in SEQUENTIAL
    parallel = 1 if sequential else args.parallel
    spec = bench_spec(
        dataset,
        target,
        epochs=args.epochs,
        budget=args.budget,
        early_stopping="-es" in method,
        parallel=parallel,
        cpus=args.cpus_per_trial,
    )
    spec = resolve_cpus(spec)
    search_alg, space = _search_alg(method, spec, parallel)
    stopper = LandedStopper(spec.target_sparsity, spec.tolerance, args.epochs)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, spec=spec.model_dump(mode="json")),
        trial_resources(spec.resources),
    )
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as storage:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                metric="sparsity",
                mode="max",
                num_samples=args.budget,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"{method}-{dataset}-{target}",
                storage_path=storage,
                stop=stopper,
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        start = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - start
    return summarise(method, spec, grid, wall)


def summarise(method: str, spec: SearchSpec, grid: tune.ResultGrid, wall: float) -> Outcome:
    """Trials, epochs and the landed (or closest) trial of a finished experiment."""
    finals: list[Mapping[str, Any]] = []
    epochs = 0
    for index in range(len(grid)):
        metrics = grid[index].metrics or {}
        if not metrics.get("epoch"):
            continue  # never started
        epochs += int(metrics["epoch"])
        finals.append(metrics)
    target, tol = spec.target_sparsity, spec.tolerance
    full = [m for m in finals if m["epoch"] == spec.training.epochs]
    landed = [m for m in full if abs(m["sparsity"] - target) <= tol]
    chosen = (
        landed[0] if landed else min(full, key=lambda m: abs(m["sparsity"] - target), default=None)
    )
    return Outcome(
        dataset=spec.dataset,
        target=target,
        method=method,
        landed=bool(landed),
        trials=len(finals),
        epochs=epochs,
        wall_s=round(wall, 1),
        sparsity=None if chosen is None else round(float(chosen["sparsity"]), 4),
        test_acc=round(float(landed[0]["test_acc"]), 4) if landed else None,
        lambdas=[float(m["weight_decay"]) for m in finals],
        sparsities=[round(float(m["sparsity"]), 4) for m in finals],
    )


def table(outcomes: Sequence[Outcome]) -> str:
    """A Markdown table, one row per (dataset, target, method)."""
    lines = [
        "| dataset | target | method | landed | trials | epochs | wall s | sparsity | test acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        acc = "—" if o.test_acc is None else f"{100 * o.test_acc:.2f}%"
        sparsity = "—" if o.sparsity is None else f"{100 * o.sparsity:.2f}%"
        lines.append(
            f"| {o.dataset} | {o.target:g} | {o.method} | {'yes' if o.landed else 'no'} | "
            f"{o.trials} | {o.epochs} | {o.wall_s:.0f} | {sparsity} | {acc} |"
        )
    return "\n".join(lines)


def totals(outcomes: Sequence[Outcome]) -> str:
    """Per method: targets landed, trials, epochs (also relative to bisection) and wall time
    summed over every (dataset, target)."""
    lines = [
        "| method | landed | trials | epochs | epochs / bisection | wall s |",
        "|---|---|---|---|---|---|",
    ]
    epochs = {m: sum(o.epochs for o in outcomes if o.method == m) for m in METHODS}
    for method in dict.fromkeys(o.method for o in outcomes):
        rows = [o for o in outcomes if o.method == method]
        ratio = f"{epochs[method] / epochs['bisection']:.2f}" if epochs["bisection"] else "—"
        lines.append(
            f"| {method} | {sum(o.landed for o in rows)}/{len(rows)} | "
            f"{sum(o.trials for o in rows)} | {epochs[method]} | {ratio} | "
            f"{sum(o.wall_s for o in rows):.0f} |"
        )
    return "\n".join(lines)


def add_grid_arguments(parser: argparse.ArgumentParser, methods: Sequence[str]) -> None:
    """``--datasets``, ``--targets``, ``--methods`` (of ``methods``) and ``--epochs``: the grid
    this benchmark and :mod:`benchmarks.searcher_replay` run."""
    parser.add_argument("--datasets", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--targets", nargs="+", type=float, default=list(TARGETS))
    parser.add_argument("--methods", nargs="+", default=list(methods), choices=list(methods))
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of every trial")


def main(argv: Sequence[str] | None = None) -> None:
    """Run every (dataset, target, method) and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_grid_arguments(parser, METHODS)
    parser.add_argument("--budget", type=int, default=12, help="trials per method and target")
    parser.add_argument("--parallel", type=int, default=2, help="concurrent trials (not -seq)")
    parser.add_argument(
        "--cpus-per-trial",
        type=float,
        help="CPUs (threads) of every trial; default the product's: the machine's CPUs shared "
        "among the trials that run at once (workers/cpus.py)",
    )
    parser.add_argument("--json", type=Path, help="also write every outcome here")
    parser.add_argument(
        "--report", type=Path, nargs="+", help="print the tables of saved --json files; no runs"
    )
    args = parser.parse_args(argv)
    if args.report:
        saved = [Outcome(**o) for path in args.report for o in json.loads(path.read_text())]
        order = {m: i for i, m in enumerate(METHODS)}
        saved.sort(key=lambda o: (list(MODELS).index(o.dataset), o.target, order[o.method]))
        print(table(saved))
        print()
        print(totals(saved))
        return

    ray.init(num_cpus=args.parallel, include_dashboard=False, log_to_driver=False)
    outcomes = []
    for dataset in args.datasets:
        for target in args.targets:
            for method in args.methods:
                outcome = run_method(method, dataset, target, args)
                outcomes.append(outcome)
                print(json.dumps(asdict(outcome)), flush=True)
                if args.json:
                    args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    print(table(outcomes))
    print()
    print(totals(outcomes))


if __name__ == "__main__":
    main()
