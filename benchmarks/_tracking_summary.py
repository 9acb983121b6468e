"""The tracking-overhead benchmark's results: one timed trial, the medians of each arm against
the untracked one, their table and the verdict against the goal.

What each phase and column means: :mod:`benchmarks.tracking_overhead`, which produces the
timings; readings of its runs: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks._timed_tracker import PHASES

GOAL = 0.05
"""Largest acceptable added time, as a fraction of the trial time without tracking."""


@dataclass(frozen=True)
class TrialTiming:
    """One timed trial.

    Attributes:
        setup: built-in setup name.
        arm: tracking arm (see :data:`ARMS`).
        repeat: index of the interleaved round (``-1``: the untimed warm-up round).
        seconds: wall time of the whole trial.
        phases: seconds of each tracker phase (all zero with tracking off).
        sparsity: final overall sparsity (equal in all arms: tracking must not change training).
        test_acc: final test accuracy.
        run_id: the trial's MLflow run, or ``None`` with tracking off.
        concurrent: other ``benchmarks.*`` processes running before or after the trial.
        figure_seconds: how long the sender thread took to write the budget files and figures,
            beside the models (not part of ``phases``: only the wait beyond the models is).
        training: the trial's epochs' own seconds (``epoch_seconds``, summed): the training
            without the trial's set-up and without the callbacks' work at epoch ends.
        thread_cpu: CPU seconds of the tracker's sender thread while the trial trained.
        server_cpu: CPU seconds of the tracking server while the trial trained (``nan`` for a
            server that does not run on this machine).
    """

    setup: str
    arm: str
    repeat: int
    seconds: float
    phases: dict[str, float]
    sparsity: float
    test_acc: float
    run_id: str | None
    concurrent: tuple[str, ...] = ()
    figure_seconds: float = 0.0
    training: float = 0.0
    thread_cpu: float = 0.0
    server_cpu: float = 0.0


@dataclass(frozen=True)
class ArmSummary:
    """Medians of one arm of one setup over the timed rounds, against the ``off`` arm.

    Attributes:
        setup: built-in setup name.
        arm: tracking arm.
        epochs: epochs per trial.
        repeats: timed trials of this arm.
        seconds: median trial wall time.
        ratio: ``seconds`` over the ``off`` arm's median.
        added: ``seconds`` minus the ``off`` arm's median.
        paired: the median over rounds of this arm's trial minus the same round's ``off``
            trial: neighbours in time, so less of the machine's drift than ``added``.
        training_paired: the same for the epochs' own seconds (:attr:`TrialTiming.training`):
            how much slower the training itself was, beyond the tracker's own calls.
        phases: median seconds of each tracker phase.
        own: the sum of ``phases``: the time spent in the tracker's own calls.
        indirect: ``added`` minus ``own``: time lost outside the tracker's own calls (the
            logging thread and the server competing for the CPU), plus noise.
        same_result: every trial of the setup ended at the same sparsity and test accuracy.
        all_seconds: the wall times, in run order.
        overlapped: how many of the trials ran beside another benchmark.
        figures: median seconds the sender thread took to write the figures (beside the models,
            so not part of ``own``).
        thread_cpu: median CPU seconds of the tracker's sender thread while the trial trained.
        server_cpu: median CPU seconds of the tracking server while the trial trained (``nan``
            for a server elsewhere).
        charged: ``own`` plus ``thread_cpu`` and ``server_cpu``: the tracker's own time and the
            CPU time it made others take while the trial trained, which at most delays training
            by as much on a machine whose cores the trial's threads fill. Far less noisy than
            ``added``, since it does not depend on how fast the machine trained this round.
    """

    setup: str
    arm: str
    epochs: int
    repeats: int
    seconds: float
    ratio: float
    added: float
    paired: float
    phases: dict[str, float]
    own: float
    indirect: float
    same_result: bool
    all_seconds: tuple[float, ...] = field(default=())
    overlapped: int = 0
    figures: float = 0.0
    thread_cpu: float = 0.0
    server_cpu: float = 0.0
    charged: float = 0.0
    training_paired: float = 0.0


def summarize(timings: Sequence[TrialTiming], epochs: int) -> list[ArmSummary]:
    """One summary per (setup, arm) of the timed trials (warm-up trials are left out)."""
    timed = [t for t in timings if t.repeat >= 0]
    out = []
    for setup in dict.fromkeys(t.setup for t in timed):
        mine = [t for t in timed if t.setup == setup]
        same = len({(t.sparsity, t.test_acc) for t in mine}) == 1
        base = statistics.median(t.seconds for t in mine if t.arm == "off")
        off_in = {t.repeat: t for t in mine if t.arm == "off"}
        for arm in dict.fromkeys(t.arm for t in mine):
            trials = [t for t in mine if t.arm == arm]
            median = statistics.median(t.seconds for t in trials)
            pairs = [(t, off_in[t.repeat]) for t in trials if t.repeat in off_in]
            rounds = [t.seconds - off.seconds for t, off in pairs]
            training = [t.training - off.training for t, off in pairs]
            phases = {p: statistics.median(t.phases[p] for t in trials) for p in PHASES}
            thread_cpu = statistics.median(t.thread_cpu for t in trials)
            server_cpu = statistics.median(t.server_cpu for t in trials)
            out.append(
                ArmSummary(
                    setup=setup,
                    arm=arm,
                    epochs=epochs,
                    repeats=len(trials),
                    seconds=median,
                    ratio=median / base,
                    added=median - base,
                    paired=statistics.median(rounds) if rounds else math.nan,
                    phases=phases,
                    own=sum(phases.values()),
                    indirect=(median - base) - sum(phases.values()) if arm != "off" else 0.0,
                    same_result=same,
                    all_seconds=tuple(t.seconds for t in trials),
                    overlapped=sum(bool(t.concurrent) for t in trials),
                    figures=statistics.median(t.figure_seconds for t in trials),
                    thread_cpu=thread_cpu,
                    server_cpu=server_cpu,
                    charged=sum(phases.values()) + thread_cpu + server_cpu,
                    training_paired=statistics.median(training) if training else math.nan,
                )
            )
    return out


def format_table(rows: Sequence[ArmSummary]) -> str:
    """A Markdown table: median trial time, ratio to ``off``, the added time (from the medians
    and round by round), the tracker's own time and its phases, the rest (``indirect``), the
    figures' time on the sender thread, the CPU time of that thread and of the server while the
    trial trained, the ``charged`` time (own plus those two), and how much longer the epochs
    themselves took, round by round."""
    header = ["setup", "epochs", "tracking", "trial s", "ratio", "added s", "paired s", "own s"]
    header += [*PHASES, "indirect", "figures (thread)", "thread cpu", "server cpu", "charged s"]
    header += ["training paired s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r.setup, str(r.epochs), r.arm, f"{r.seconds:.2f}", f"{r.ratio:.3f}"]
        if r.arm == "off":
            cells += ["–"] * (len(header) - len(cells))
        else:
            cells += [f"{r.added:+.2f}", f"{r.paired:+.2f}", f"{r.own:.2f}"]
            cells += [f"{r.phases[p]:.2f}" for p in PHASES]
            cells += [f"{r.indirect:+.2f}", f"{r.figures:.2f}", f"{r.thread_cpu:.2f}"]
            cells += [f"{r.server_cpu:.2f}", f"{r.charged:.2f}", f"{r.training_paired:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_report(rows: Sequence[ArmSummary], goal: float = GOAL) -> list[str]:
    """One line per tracked arm: the charged time and the added wall time as shares of the
    untracked trial, against the goal; and a warning where the arms of a setup did not train to
    the same result.

    The verdict judges the charged time (own time plus the CPU time of the tracker's thread and
    the server while the trial trained) when the server's CPU time is known, and the added wall
    time (ratio of the medians) otherwise."""
    lines = []
    for r in rows:
        if r.arm != "off":
            base = r.seconds - r.added
            wall = (
                f"wall time {r.ratio - 1.0:+.1%} (medians), {r.paired / base:+.1%} per round "
                f"(median)"
            )
            if math.isfinite(r.charged):
                share, judged = r.charged / base, "charged"
                text = (
                    f"charged {share:.1%} of the trial (own {r.own / base:.1%}, thread "
                    f"{r.thread_cpu / base:.1%}, server {r.server_cpu / base:.1%}); {wall}"
                )
            else:
                share, judged = r.ratio - 1.0, "wall time"
                text = f"{wall}; own calls {r.own / base:.1%}"
            verdict = "meets" if share <= goal else "MISSES"
            lines.append(f"{r.setup}/{r.arm}: {text} (goal <= {goal:.0%}): {verdict} on {judged}")
    for setup in dict.fromkeys(r.setup for r in rows if not r.same_result):
        lines.append(f"WARNING {setup}: the arms ended at different sparsity or accuracy")
    overlapped, trials = sum(r.overlapped for r in rows), sum(r.repeats for r in rows)
    if overlapped:
        lines.append(f"WARNING {overlapped} of {trials} timed trials ran beside another benchmark")
    return lines
