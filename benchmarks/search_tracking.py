"""Time that MLflow tracking adds to a whole search, as a user runs it.

:mod:`benchmarks.tracking_overhead` times one bare trial without Ray, the strictest view of the
tracker's cost. This benchmark times what a user waits for: ``workers.run_search`` of a built-in
setup's default spec (target 0.9, 30-epoch trials) on a local Ray, with tracking off and on
(``TrackingSettings(enabled=...)``), against a real ``mlflow server`` (SQLite and a local
artifact root, as the embedded default; started in a temporary folder, stopped at the end).
With tracking on, everything a search records is inside the timed region: the job's parent run,
every trial's child run (params, epoch metrics, budget files, both figures, both models), the
job's trials table and trade-off plots and the registration of the best model.

The arms alternate round by round (off, on / on, off / …) in one process and one Ray instance,
each search in fresh experiment storage. By default trials run one at a time
(``--parallel 1``), so both arms train exactly the same trials (training is seeded) and their
wall times compare directly; the table says whether they did. With ``--parallel 2`` (the
product default) the order in which trials finish can change the search's path; compare
``s / epoch`` then.

Usage::

    .venv/bin/python -m benchmarks.search_tracking --repeats 4 [--setup digits] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._tracking_env import machine_state, tracking_server
from benchmarks.tracking_overhead import SETUPS
from strsearch.spec import SearchSpec
from workers.search import ensure_ray, run_search
from workers.tracking import TrackingSettings
from workers.tracking.common import using_tracking_uri

ARMS = ("off", "on")
EXPERIMENT = "search-tracking-overhead"
TrialPath = list[tuple[float, float | None]]
"""``(λ, final sparsity)`` of a search's trials, in creation order."""


@dataclass(frozen=True)
class SearchTiming:
    """One timed search.

    Attributes:
        setup: built-in setup name.
        arm: ``off`` or ``on``.
        repeat: index of the round.
        seconds: wall time of ``run_search``.
        trials: trials the search ran.
        epochs: training epochs of all its trials.
        path: ``(λ, final sparsity)`` of every trial, in creation order.
    """

    setup: str
    arm: str
    repeat: int
    seconds: float
    trials: int
    epochs: int
    path: TrialPath


@dataclass(frozen=True)
class SearchSummary:
    """Medians of one arm of one setup; ``diff``: median of the rounds' on − off differences.

    Attributes:
        setup: built-in setup name.
        arm: ``off`` or ``on``.
        rounds: timed searches of the arm.
        seconds: median wall time.
        trials: median trials.
        epochs: median epochs.
        per_epoch: median seconds per trained epoch.
        ratio: ``seconds`` over the ``off`` arm's median.
        diff: median of the per-round ``on − off`` wall times (``None`` for ``off``).
        same_trials: every search of the setup trained the same ``(λ, sparsity)`` path.
    """

    setup: str
    arm: str
    rounds: int
    seconds: float
    trials: float
    epochs: float
    per_epoch: float
    ratio: float
    diff: float | None
    same_trials: bool


def setup_spec(setup: str, parallel: int, epochs: int | None = None) -> SearchSpec:
    """The default spec of a built-in setup at target 0.9, ``parallel`` trials at a time."""
    model, dataset = SETUPS[setup]
    data: dict[str, object] = {
        "model": model,
        "dataset": dataset,
        "target_sparsity": 0.9,
        "search": {"parallel_trials": parallel},
    }
    if epochs is not None:
        data["training"] = {"epochs": epochs}
    return SearchSpec.parse(data)


def time_search(
    spec: SearchSpec, arm: str, uri: str, storage: Path
) -> tuple[float, TrialPath, int]:
    """Run one search with tracking ``arm`` in fresh ``storage``; return its wall seconds, its
    ``(λ, sparsity)`` path and its epochs."""
    tracking = TrackingSettings(enabled=arm == "on", tracking_uri=uri, experiment=EXPERIMENT)
    started = time.perf_counter()
    result = run_search(spec, storage_path=storage, resume=False, tracking=tracking)
    seconds = time.perf_counter() - started
    path = [(t.weight_decay, t.sparsity) for t in result.trials]
    return seconds, path, sum(t.epochs for t in result.trials)


def summarize(timings: Sequence[SearchTiming]) -> list[SearchSummary]:
    """One :class:`SearchSummary` per setup and arm, ``off`` first."""
    rows = []
    for setup in dict.fromkeys(t.setup for t in timings):
        mine = [t for t in timings if t.setup == setup]
        same = all(t.path == mine[0].path for t in mine)
        by_round = {(t.repeat, t.arm): t.seconds for t in mine}
        base = statistics.median(t.seconds for t in mine if t.arm == "off")
        for arm in ARMS:
            runs = [t for t in mine if t.arm == arm]
            if not runs:
                continue
            diffs = [
                by_round[(r, "on")] - by_round[(r, "off")]
                for r in sorted({t.repeat for t in mine})
                if (r, "on") in by_round and (r, "off") in by_round
            ]
            seconds = statistics.median(t.seconds for t in runs)
            rows.append(
                SearchSummary(
                    setup=setup,
                    arm=arm,
                    rounds=len(runs),
                    seconds=seconds,
                    trials=statistics.median(t.trials for t in runs),
                    epochs=statistics.median(t.epochs for t in runs),
                    per_epoch=statistics.median(t.seconds / max(t.epochs, 1) for t in runs),
                    ratio=seconds / base,
                    diff=statistics.median(diffs) if arm == "on" and diffs else None,
                    same_trials=same,
                )
            )
    return rows


def format_table(rows: Sequence[SearchSummary]) -> str:
    """A Markdown table of the summaries."""
    lines = [
        "| setup | tracking | rounds | search s | trials | epochs | s / epoch | ratio "
        "| on − off per round, median | same trials |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "–" if r.diff is None else f"{r.diff:+.2f} s ({r.diff / (r.seconds - r.diff):+.1%})"
        lines.append(
            f"| {r.setup} | {r.arm} | {r.rounds} | {r.seconds:.2f} | {r.trials:g} | {r.epochs:g} "
            f"| {r.per_epoch:.3f} | {r.ratio:.3f} | {diff} | {'yes' if r.same_trials else 'no'} |"
        )
    return "\n".join(lines)


def run_benchmark(
    setups: Sequence[str], *, repeats: int, parallel: int, epochs: int | None, uri: str
) -> list[SearchTiming]:
    """Time ``repeats`` rounds of both arms per setup against the server at ``uri``.

    Raises:
        ValueError: for an unknown setup, ``repeats`` or ``parallel`` below 1.
    """
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown or repeats < 1 or parallel < 1:
        raise ValueError(
            f"need setups from {sorted(SETUPS)}, repeats >= 1 and parallel >= 1; got unknown "
            f"{unknown}, repeats {repeats}, parallel {parallel}"
        )
    ensure_ray()
    timings = []
    with tempfile.TemporaryDirectory(prefix="search-tracking-") as tmp:
        for setup in setups:
            spec = setup_spec(setup, parallel, epochs)
            for repeat in range(repeats):
                arms = ARMS if repeat % 2 == 0 else ARMS[::-1]
                for arm in arms:
                    storage = Path(tmp) / f"{setup}-{arm}-{repeat}"
                    seconds, path, trained = time_search(spec, arm, uri, storage)
                    timings.append(
                        SearchTiming(setup, arm, repeat, seconds, len(path), trained, path)
                    )
                    print(
                        f"{setup} round {repeat} {arm}: {seconds:.2f} s, {len(path)} trials, "
                        f"{trained} epochs",
                        file=sys.stderr,
                        flush=True,
                    )
    return timings


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.search_tracking",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=4, help="rounds of both arms (default 4)")
    parser.add_argument("--setup", action="append", choices=sorted(SETUPS), help="repeatable")
    parser.add_argument("--parallel", type=int, default=1, help="trials at a time (default 1)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the recipe's 30)")
    parser.add_argument("--json", type=Path, help="write every search's timing here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    before = machine_state()
    with using_tracking_uri(), tracking_server() as uri:
        timings = run_benchmark(
            args.setup or list(SETUPS),
            repeats=args.repeats,
            parallel=args.parallel,
            epochs=args.epochs,
            uri=uri,
        )
    print(format_table(summarize(timings)))
    if args.json:
        payload = {
            "machine_before": before,
            "machine_after": machine_state(),
            "timings": [asdict(t) for t in timings],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    raise SystemExit(main())
