"""What a trial reports after each epoch, shared by single-process and data-parallel trials."""

from __future__ import annotations

from typing import Any

import ray

from str_core.train import EpochMetrics, Trainer
from workers.early_stop import BandStopRule


def epoch_report(
    trainer: Trainer, metrics: EpochMetrics, extra: dict[str, float], rule: BandStopRule | None
) -> dict[str, Any]:
    """The epoch's metrics (scalars, per-layer sparsity and threshold), ``extra`` (λ, ``s_init``),
    the epoch, the number of data-parallel workers and the Ray node.

    With a ``rule``, an epoch after which the trial can no longer land in the band also carries
    ``band_stop: "above" | "below"``, and the trainer is asked to stop after it (the trial then
    ends normally). Every rank of a data-parallel trial sees the same metrics, so every rank takes
    the same decision.
    """
    report: dict[str, Any] = {
        **metrics.flat(),
        **extra,
        "epoch": metrics.epoch,
        "world_size": trainer.world_size,
        "node_id": ray.get_runtime_context().get_node_id(),
    }
    sparsity = report.get("sparsity")
    if rule is not None and isinstance(sparsity, int | float):
        decision = rule.decide(metrics.epoch, sparsity)
        if decision is not None:
            report["band_stop"] = decision
            trainer.request_stop()
    return report
