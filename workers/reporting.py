"""What a trial reports after each epoch, shared by single-process and data-parallel trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import ray

from str_core.train import Callback, EpochMetrics, Trainer
from strsearch.spec import SearchSpec
from workers.early_stop import DEFAULT_MARGINS, BandStopRule, Margins


def epoch_report(
    trainer: Trainer,
    metrics: EpochMetrics,
    extra: dict[str, Any],
    rule: BandStopRule | None,
    target: float | None = None,
) -> dict[str, Any]:
    """The epoch's metrics (scalars, per-layer sparsity and threshold), ``extra`` (λ, ``s_init``),
    the epoch, the number of data-parallel workers and the Ray node; with a ``target``, also
    ``target_gap = |sparsity − target|`` (what a generic optimiser would minimise).

    With a ``rule``, an epoch after which the trial can no longer land in the band also carries
    ``band_stop: "above" | "below"`` and ``sparsity_estimate`` (the rule's guess of the final
    sparsity, for the searcher's interpolation), and the trainer is asked to stop after it (the
    trial then ends normally). Every rank of a data-parallel trial sees the same metrics, so every
    rank takes the same decision.
    """
    report: dict[str, Any] = {
        **metrics.flat(),
        **extra,
        "epoch": metrics.epoch,
        "world_size": trainer.world_size,
        "node_id": ray.get_runtime_context().get_node_id(),
    }
    sparsity = report.get("sparsity")
    if target is not None and isinstance(sparsity, int | float):
        report["target_gap"] = abs(float(sparsity) - target)
    if rule is not None and isinstance(sparsity, int | float):
        decision = rule.decide(metrics.epoch, sparsity)
        if decision is not None:
            report["band_stop"] = decision
            report["sparsity_estimate"] = rule.estimate(metrics.epoch, sparsity)
            trainer.request_stop()
    return report


def band_rule(
    spec: SearchSpec, epochs: int, margins: Margins = DEFAULT_MARGINS
) -> BandStopRule | None:
    """The early-stop rule of a search trial of ``spec`` (``None`` when early stopping is off);
    ``margins`` other than the measured defaults are for benchmarks."""
    if not spec.search.early_stopping:
        return None
    return BandStopRule(spec.target_sparsity, spec.tolerance, epochs, margins)


class EpochReporter(Callback):
    """Base of the trial reporters: builds :func:`epoch_report` after each epoch and hands it to
    :meth:`send` (Tune for a single-process trial, Ray Train for a data-parallel one).

    Args:
        checkpoint_dir: where the trainer writes ``last.pt``; reported as the checkpoint.
        extra: values added to every report (λ and ``s_init``; method and seed in comparisons).
        rule: early-stop rule, or ``None``.
        target: the search's target sparsity (adds ``target_gap`` to every report), or ``None``.
    """

    def __init__(
        self,
        checkpoint_dir: Path,
        extra: dict[str, Any],
        rule: BandStopRule | None = None,
        target: float | None = None,
    ) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.extra = extra
        self.rule = rule
        self.target = target

    @classmethod
    def for_trial(
        cls, checkpoint_dir: Path, spec: SearchSpec, weight_decay: float, s_init: float, epochs: int
    ) -> Self:
        """The reporter of the search trial ``(weight_decay, s_init)`` of ``spec``."""
        extra = {"weight_decay": weight_decay, "s_init": s_init}
        return cls(checkpoint_dir, extra, band_rule(spec, epochs), spec.target_sparsity)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.send(trainer, epoch_report(trainer, metrics, self.extra, self.rule, self.target))

    def send(self, trainer: Trainer, report: dict[str, Any]) -> None:
        """Deliver one epoch's report (with the checkpoint where due)."""
        raise NotImplementedError


def trial_callbacks(reporter: EpochReporter, *others: Callback) -> list[Callback]:
    """A trial's trainer callbacks: ``others`` (pruners, trackers) in the given order, then the
    reporter. Tune may stop a trial at a report, so everything else an epoch's end does is done
    before it; a tracker's run, for one, is open by then (see
    :meth:`workers.tracking.TrialTracker.on_epoch_end`)."""
    return [*others, reporter]
