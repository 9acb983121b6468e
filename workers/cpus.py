"""CPUs of a trial when the spec leaves them to the cluster (``resources.cpus_per_trial: null``).

A trial's CPUs are both what Ray reserves for it and the number of PyTorch threads it trains
with. One thread per trial leaves cores idle when fewer trials run than the machine has cores:
a search that runs one trial at a time (the default) on a 2-core laptop would train on half of
it. So by default the cluster's CPUs are shared among the trial processes that run at once
(``parallel_trials × workers_per_trial``), without exceeding the largest node (a process runs on
one node) or :data:`AUTO_CPU_CAP`, and never fewer than one. An explicit ``cpus_per_trial``
is used as given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from strsearch.spec import Resources, SearchSpec

AUTO_CPU_CAP = 4
"""Most CPUs a trial gets by default. Measured on the built-in CNNs on a 2-core machine: a trial
trains in about 0.45–0.75× the time with 2 threads as with 1 (docs/benchmarks.md);
more threads were not measured, and small models gain less from each further one. Set
``cpus_per_trial`` for large models."""


def node_cpus() -> list[float]:
    """The CPUs of every alive node of the connected Ray cluster (``ray.init`` first)."""
    import ray

    nodes = ray.nodes()  # type: ignore[no-untyped-call]
    return [float(n["Resources"].get("CPU", 0.0)) for n in nodes if n.get("Alive")]


def auto_cpus(nodes: Sequence[float], processes: int) -> float:
    """CPUs for each of ``processes`` trial processes running at once on nodes with ``nodes``
    CPUs: an equal share of the whole, at most the largest node and :data:`AUTO_CPU_CAP`, at
    least 1."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    total, largest = sum(nodes), max(nodes, default=0.0)
    share = math.floor(min(total / processes, largest, AUTO_CPU_CAP))
    return float(max(1, share))


def resolve_cpus(spec: SearchSpec, nodes: Sequence[float] | None = None) -> SearchSpec:
    """``spec`` with ``resources.cpus_per_trial`` set: as given, or :func:`auto_cpus` for the
    nodes (default: the connected Ray cluster's, :func:`node_cpus`)."""
    resources = spec.resources
    if resources.cpus_per_trial is not None:
        return spec
    processes = spec.search.parallel_trials * resources.workers_per_trial
    cpus = auto_cpus(node_cpus() if nodes is None else nodes, processes)
    return spec.model_copy(
        update={"resources": resources.model_copy(update={"cpus_per_trial": cpus})}
    )


def reserved_cpus(resources: Resources) -> float:
    """The CPUs Ray reserves for a trial process.

    Raises:
        ValueError: the count was left to the cluster and not resolved (:func:`resolve_cpus`).
    """
    if resources.cpus_per_trial is None:
        raise ValueError("resources.cpus_per_trial is unresolved: use workers.cpus.resolve_cpus")
    return resources.cpus_per_trial


def trial_threads(resources: Resources) -> int:
    """PyTorch threads of a trial process: its (resolved) CPUs, whole, at least one; one when
    the spec was not resolved (a trial run outside :func:`workers.run_search`)."""
    return max(1, int(resources.cpus_per_trial or 1))
