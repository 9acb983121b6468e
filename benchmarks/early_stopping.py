"""Evidence for early stopping of trials that can no longer land in the tolerance band.

Trains STR runs to full length and records their sparsity after every epoch, then replays
:class:`workers.early_stop.BandStopRule` over each recorded trajectory for a grid of targets.
Training is deterministic and the rule only reads past epochs, so the replay is exactly what an
online stop would have done. Two disjoint sets of runs are used:

- **calibration** (:data:`CALIBRATION`: seeds 0–3, ``s_init`` −4, −5 and −6, 10, 20 and 30
  epochs, both datasets): :func:`calibrate` measures from them the largest remaining rise and
  fall of sparsity as a function of the fraction of epochs done; the rule's constants in
  :mod:`workers.early_stop` are these envelopes times a safety factor plus a margin;
- **validation** (:data:`VALIDATION`: seeds 4 and 5, ``s_init`` −5.5 and −4.5, 15 and 30 epochs,
  other λ values): the rule is replayed on them for every target ``T`` of a grid. A *violation*
  is a trial that ended within ``T ± tol`` at full length but that the rule would have stopped;
  the benchmark also counts the epochs the rule saves on trials that did not land.

It also replays envelopes measured on the ``s_init`` −5 runs alone (:data:`NARROW_CALIBRATION`,
the first calibration, which failed on the others) and the bare envelopes without safety terms.

Usage::

    python -m benchmarks.early_stopping --trajectories runs/early_stopping.json   # trains, ~12 min
    python -m benchmarks.early_stopping --quick          # a smoke run: five 10-epoch digits runs
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.sparsity_response import LAMBDAS, SETUPS, run_point
from workers.early_stop import DEFAULT_MARGINS, BandStopRule, Margins

KNOTS = tuple(round(0.2 + 0.05 * i, 2) for i in range(16))  # 0.2, 0.25, …, 0.95
TARGETS = tuple(round(0.5 + 0.01 * i, 2) for i in range(49))  # 0.50, 0.51, …, 0.98
TOLERANCE = 0.005
NEAR = 0.05  # a "near miss" ends within 5 pp of the target: where a search's later trials fall


@dataclass(frozen=True)
class RunKey:
    """What identifies one training run (the recipe is otherwise that of ``run_point``)."""

    dataset: str
    weight_decay: float
    epochs: int
    s_init: float
    seed: int


@dataclass(frozen=True)
class Run:
    """One full-length run and its overall sparsity after each epoch (1-based epoch i at i−1)."""

    key: RunKey
    trajectory: tuple[float, ...]
    seconds: float = 0.0

    @property
    def final(self) -> float:
        """Sparsity at the end of training."""
        return self.trajectory[-1]


@dataclass(frozen=True)
class RunSet:
    """A grid of runs: every combination of the fields."""

    name: str
    datasets: tuple[str, ...]
    lambdas: tuple[float, ...]
    epochs: tuple[int, ...]
    s_inits: tuple[float, ...]
    seeds: tuple[int, ...]

    def run_keys(self) -> list[RunKey]:
        """The runs of the set, in a fixed order."""
        return [
            RunKey(ds, wd, ep, si, seed)
            for seed, si in zip(self.seeds, self.s_inits, strict=True)
            for ep in self.epochs
            for ds in self.datasets
            for wd in self.lambdas
        ]


VALIDATION_LAMBDAS = (0.0, 1.5e-3, 3e-3, 7e-3, 1.5e-2, 4e-2)

NARROW_CALIBRATION = [
    RunSet("calibration", tuple(SETUPS), LAMBDAS, (30, 10), (-5.0,), (0,)),
    RunSet("calibration", tuple(SETUPS), (1e-3, 5e-3, 2e-2), (10,), (-5.0,), (1,)),
]
CALIBRATION = [
    *NARROW_CALIBRATION,
    RunSet("calibration", tuple(SETUPS), VALIDATION_LAMBDAS, (10,), (-4.0,), (2,)),
    RunSet("calibration", tuple(SETUPS), (1.5e-3, 7e-3, 1.5e-2), (20,), (-6.0,), (3,)),
    RunSet("calibration", tuple(SETUPS), (3e-3,), (30,), (-4.0,), (2,)),
]
VALIDATION = [
    RunSet("validation", tuple(SETUPS), (1e-3, 4e-3, 1e-2, 3e-2), (15,), (-5.5,), (4,)),
    RunSet("validation", tuple(SETUPS), (2.5e-3, 8e-3), (30,), (-4.5,), (5,)),
]
QUICK_CALIBRATION = [RunSet("calibration", ("digits",), (0.0, 5e-3, 2e-2), (10,), (-5.0,), (0,))]
QUICK_VALIDATION = [RunSet("validation", ("digits",), (2e-3, 1e-2), (10,), (-4.5,), (5,))]


def _key_id(key: RunKey) -> str:
    return f"{key.dataset}|{key.weight_decay:g}|{key.epochs}|{key.s_init:g}|{key.seed}"


def load_runs(path: Path | None) -> dict[str, Run]:
    """Runs stored by :func:`save_runs` (an empty cache when ``path`` is missing)."""
    if path is None or not path.exists():
        return {}
    runs = {}
    for item in json.loads(path.read_text()):
        run = Run(RunKey(**item["key"]), tuple(item["trajectory"]), item.get("seconds", 0.0))
        runs[_key_id(run.key)] = run
    return runs


def save_runs(path: Path, runs: Iterable[Run]) -> None:
    """Write runs as JSON (a list of ``{key, trajectory, seconds}``)."""
    data = [asdict(r) for r in runs]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def collect(keys: Sequence[RunKey], cache: dict[str, Run], path: Path | None) -> list[Run]:
    """Train every run of ``keys`` missing from ``cache`` (saving after each) and return all."""
    out = []
    for key in keys:
        run = cache.get(_key_id(key))
        if run is None:
            started = time.perf_counter()
            point = run_point(key.dataset, key.weight_decay, key.epochs, key.s_init, key.seed)
            run = Run(key, tuple(point.trajectory), time.perf_counter() - started)
            cache[_key_id(key)] = run
            print(f"trained {_key_id(key)}: final {run.final:.2%} in {run.seconds:.1f} s")
            if path is not None:
                save_runs(path, cache.values())
        out.append(run)
    return out


def _all_keys(sets: Sequence[RunSet]) -> list[RunKey]:
    return [k for s in sets for k in s.run_keys()]


def calibrate(runs: Sequence[Run], knots: Sequence[float] = KNOTS) -> dict[str, list[float]]:
    """Measured envelopes: per knot, the largest remaining rise / fall at any fraction ≥ knot.

    For a run of ``E`` epochs and each epoch ``e < E``, the remaining rise is
    ``s(E) − s(e)`` and the remaining fall ``s(e) − s(E)`` (the final value is what decides
    whether the trial lands), at fraction ``e / E``.

    Returns:
        ``{"knots": [...], "rise": [...], "fall": [...]}``, one value per knot (0 when no run
        ever rose / fell after it).
    """
    rise = [0.0] * len(knots)
    fall = [0.0] * len(knots)
    for run in runs:
        epochs = len(run.trajectory)
        for e in range(1, epochs):
            fraction = e / epochs
            change = run.final - run.trajectory[e - 1]
            for i, knot in enumerate(knots):
                if fraction + 1e-9 >= knot:
                    rise[i] = max(rise[i], change)
                    fall[i] = max(fall[i], -change)
    return {"knots": list(knots), "rise": rise, "fall": fall}


def first_stop(
    run: Run, target: float, tolerance: float, margins: Margins
) -> tuple[int, str] | None:
    """The epoch and side at which the rule would stop ``run``, or ``None``."""
    rule = BandStopRule(target, tolerance, len(run.trajectory), margins)
    for epoch, sparsity in enumerate(run.trajectory, start=1):
        decision = rule.decide(epoch, sparsity)
        if decision is not None:
            return epoch, decision
    return None


@dataclass
class Replay:
    """The rule replayed over runs and a grid of targets."""

    pairs: int = 0
    landed: int = 0
    violations: int = 0
    wrong_side: int = 0
    stopped: int = 0
    missed_epochs: int = 0
    saved_epochs: int = 0
    near_missed_epochs: int = 0
    near_saved_epochs: int = 0
    examples: list[str] | None = None

    @property
    def saved_fraction(self) -> float:
        """Epochs saved, as a fraction of the epochs of trials that did not land."""
        return self.saved_epochs / self.missed_epochs if self.missed_epochs else 0.0

    @property
    def near_saved_fraction(self) -> float:
        """The same for near misses (final within :data:`NEAR` of the target, not landed)."""
        return self.near_saved_epochs / self.near_missed_epochs if self.near_missed_epochs else 0.0


def replay(
    runs: Sequence[Run],
    targets: Sequence[float] = TARGETS,
    tolerance: float = TOLERANCE,
    margins: Margins = DEFAULT_MARGINS,
) -> Replay:
    """Replay the rule over every (run, target) pair.

    A *violation* is a run that ended within ``target ± tolerance`` but would have been stopped;
    a *wrong side* is a stop whose side differs from where the run ended.
    """
    out = Replay(examples=[])
    for run in runs:
        epochs = len(run.trajectory)
        for target in targets:
            landed = abs(run.final - target) <= tolerance + 1e-12
            stop = first_stop(run, target, tolerance, margins)
            out.pairs += 1
            out.landed += landed
            near = not landed and abs(run.final - target) <= NEAR
            if not landed:
                out.missed_epochs += epochs
            if near:
                out.near_missed_epochs += epochs
            if stop is None:
                continue
            epoch, side = stop
            out.stopped += 1
            ended = "above" if run.final > target else "below"
            if landed:
                out.violations += 1
                assert out.examples is not None
                out.examples.append(f"{_key_id(run.key)} T={target:.2f} stop@{epoch} {side}")
            else:
                out.saved_epochs += epochs - epoch
                if near:
                    out.near_saved_epochs += epochs - epoch
                if side != ended:
                    out.wrong_side += 1
    return out


def measured_margins(runs: Sequence[Run], base: Margins = DEFAULT_MARGINS) -> Margins:
    """``base`` with its envelopes replaced by those measured on ``runs`` (same safety terms)."""
    envelope = calibrate(runs)
    knots = envelope["knots"]
    return replace(
        base,
        rise=tuple(zip(knots, envelope["rise"], strict=True)),
        fall=tuple(zip(knots, envelope["fall"], strict=True)),
    )


def covers(shipped: Margins, measured: Margins) -> bool:
    """Whether the shipped bounds are at least the measured ones at every knot."""
    for knot, _ in measured.rise:
        pairs = [(shipped.max_rise(knot), measured.max_rise(knot))]
        pairs.append((shipped.max_fall(knot), measured.max_fall(knot)))
        if any(a is None or b is None or a < b - 1e-9 for a, b in pairs):
            return False
    return True


def _row(name: str, r: Replay) -> str:
    return (
        f"| {name} | {r.pairs} | {r.landed} | {r.violations} | {r.wrong_side} | {r.stopped} | "
        f"{r.saved_epochs}/{r.missed_epochs} ({r.saved_fraction:.1%}) | "
        f"{r.near_saved_epochs}/{r.near_missed_epochs} ({r.near_saved_fraction:.1%}) |"
    )


def print_replays(groups: dict[str, list[Run]], margins: Margins) -> dict[str, Any]:
    """Replay ``margins`` over each group of runs and print one table row per group."""
    targets = f"T = {TARGETS[0]:.2f}…{TARGETS[-1]:.2f} step 0.01, tol {TOLERANCE}"
    print(f"replay over {targets}:")
    print(
        "| runs | (run, T) pairs | landed | violations | wrong side | stopped | epochs saved | "
        "saved on near misses (≤ 5 pp) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name, runs in groups.items():
        if not runs:
            continue
        result = replay(runs, margins=margins)
        results[name] = asdict(result) | {
            "saved_fraction": result.saved_fraction,
            "near_saved_fraction": result.near_saved_fraction,
        }
        print(_row(name, result))
        for example in result.examples or []:
            print(f"    violation: {example}")
    return results


def _groups(name: str, runs: Sequence[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {name: list(runs)}
    for epochs in sorted({len(r.trajectory) for r in runs}):
        groups[f"{name}, {epochs} epochs"] = [r for r in runs if len(r.trajectory) == epochs]
    for dataset in sorted({r.key.dataset for r in runs}):
        groups[f"{name}, {dataset}"] = [r for r in runs if r.key.dataset == dataset]
    return groups


def print_report(
    narrow: Sequence[Run],
    calibration: Sequence[Run],
    validation: Sequence[Run],
    margins: Margins,
) -> dict[str, Any]:
    """Print the envelopes and the replay tables; return them as data.

    First the rule with envelopes measured on ``narrow`` alone (one ``s_init``) is replayed on
    the other calibration runs, then the bare calibration envelopes (no safety terms) on the
    validation runs, then the shipped ``margins`` on calibration and validation.
    """
    measured = measured_margins(calibration, margins)
    print("\nmeasured on the calibration runs (largest change from a fraction ≥ f to the end):")
    print("| f | rise | fall | G(f) shipped | D(f) shipped |")
    print("|---|---|---|---|---|")
    for (knot, rise), (_, fall) in zip(measured.rise, measured.fall, strict=True):
        g, d = margins.max_rise(knot), margins.max_fall(knot)
        g_text = "-" if g is None else f"{g:.3f}"
        d_text = "-" if d is None else f"{d:.3f}"
        print(f"| {knot:.2f} | {rise:.3f} | {fall:.3f} | {g_text} | {d_text} |")
    cover = covers(margins, measured)
    print(f"shipped bounds ≥ measured envelope × safety + margin at every knot: {cover}")
    report: dict[str, Any] = {"envelope": calibrate(calibration), "shipped_covers": cover}
    narrow_ids = {_key_id(r.key) for r in narrow}
    others = [r for r in calibration if _key_id(r.key) not in narrow_ids]
    if others:
        print("\n[1] envelopes measured on the narrow calibration set only, on the other runs:")
        report["narrow"] = print_replays(
            {"calibration minus narrow set": others}, measured_margins(narrow, margins)
        )
    bare = replace(measured, safety_factor=1.0, rise_margin=0.0, fall_margin=0.0)
    print("\n[2] the bare calibration envelopes (no safety factor, no margins), on validation:")
    report["bare"] = print_replays({"validation": list(validation)}, bare)
    print("\n[3] shipped rule:")
    report["replay"] = print_replays(
        {"calibration": list(calibration), **_groups("validation", validation)}, margins
    )
    return report


def write_fixture(path: Path, runs: Sequence[Run]) -> None:
    """Write runs, rounded to 4 decimals, as the small test fixture."""
    data = {
        "source": "python -m benchmarks.early_stopping (runs of the fixture: see 'key')",
        "runs": [
            {"key": _key_id(r.key), "trajectory": [round(x, 4) for x in r.trajectory]} for r in runs
        ],
    }
    path.write_text(json.dumps(data) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trajectories", type=Path, default=None, help="cache of runs (JSON)")
    parser.add_argument("--quick", action="store_true", help="five 10-epoch digits runs")
    parser.add_argument("--collect-only", action="store_true", help="train, do not analyse")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--fixture", type=Path, default=None, help="write the test fixture")
    args = parser.parse_args(argv)
    narrow_sets = [] if args.quick else NARROW_CALIBRATION
    calibration_sets = QUICK_CALIBRATION if args.quick else CALIBRATION
    validation_sets = QUICK_VALIDATION if args.quick else VALIDATION
    cache = load_runs(args.trajectories)
    calibration = collect(_all_keys(calibration_sets), cache, args.trajectories)
    validation = collect(_all_keys(validation_sets), cache, args.trajectories)
    narrow = collect(_all_keys(narrow_sets), cache, args.trajectories)
    if args.collect_only:
        return {}
    margins = DEFAULT_MARGINS
    print(
        f"{len(calibration)} calibration runs, {len(validation)} validation runs "
        f"({sum(len(r.trajectory) for r in calibration + validation)} epochs)"
    )
    report = print_report(narrow, calibration, validation, margins)
    report["runs"] = [asdict(r) for r in calibration + validation]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.fixture:
        hard = [r for r in calibration if r.key.s_init == -6.0]
        write_fixture(args.fixture, [*validation, *hard])
    return report


if __name__ == "__main__":
    main()
