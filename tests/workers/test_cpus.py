"""CPUs of a trial left to the cluster: shares, caps, and the connected Ray's nodes."""

from __future__ import annotations

import pytest

from strsearch.spec import SearchSpec
from workers.cpus import AUTO_CPU_CAP, auto_cpus, node_cpus, resolve_cpus, trial_threads
from workers.data_parallel import trial_resources

BASE = {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9}


def _spec(**sections: dict[str, object]) -> SearchSpec:
    return SearchSpec.parse(BASE | sections)


@pytest.mark.parametrize(
    ("nodes", "processes", "expected"),
    [
        ([2.0], 1, 2.0),  # a 2-core laptop, one trial at a time: both cores
        ([2.0], 2, 1.0),  # two at a time: one each
        ([2.0], 3, 1.0),  # more trials than cores: still one each (Ray queues the rest)
        ([16.0], 1, float(AUTO_CPU_CAP)),  # a big node: capped
        ([16.0], 8, 2.0),
        ([0.0, 3.0, 3.0], 2, 3.0),  # a head without CPUs, two workers: one trial per worker
        ([0.0, 3.0, 3.0], 1, 3.0),  # never more than the largest node: a process runs on one
        ([1.0, 1.0], 1, 1.0),
        ([], 1, 1.0),  # no CPUs known: at least one
    ],
)
def test_the_cluster_s_cpus_are_shared_among_the_trials_that_run_at_once(
    nodes: list[float], processes: int, expected: float
) -> None:
    assert auto_cpus(nodes, processes) == expected


def test_no_processes_is_an_error() -> None:
    with pytest.raises(ValueError, match="processes"):
        auto_cpus([2.0], 0)


def test_the_default_spec_gets_the_share_of_one_trial_at_a_time() -> None:
    spec = _spec()
    assert spec.resources.cpus_per_trial is None
    resolved = resolve_cpus(spec, [2.0])
    assert resolved.resources.cpus_per_trial == 2.0
    assert trial_threads(resolved.resources) == 2
    assert trial_resources(resolved.resources) == {"cpu": 2.0, "gpu": 0.0}
    assert resolved.fingerprint() != spec.fingerprint()  # the caller names by the given spec
    assert spec.resources.cpus_per_trial is None  # the given spec is left as it was


def test_parallel_and_data_parallel_processes_share_the_cpus() -> None:
    spec = _spec(
        search={"parallel_trials": 2},
        resources={"workers_per_trial": 2},
        training={"batch_size": 64},
    )
    assert resolve_cpus(spec, [8.0]).resources.cpus_per_trial == 2.0


def test_an_explicit_count_is_used_as_given() -> None:
    spec = _spec(resources={"cpus_per_trial": 0.5})
    assert resolve_cpus(spec, [16.0]) is spec
    assert trial_threads(spec.resources) == 1


def test_an_unresolved_spec_cannot_reserve_resources() -> None:
    with pytest.raises(ValueError, match="resolve_cpus"):
        trial_resources(_spec().resources)
    assert trial_threads(_spec().resources) == 1


@pytest.mark.usefixtures("local_ray")
def test_the_connected_cluster_s_nodes_are_read_from_ray() -> None:
    # the session's Ray head has 2 CPUs (tests/conftest.py) and no other node
    assert node_cpus() == [2.0]
    assert resolve_cpus(_spec()).resources.cpus_per_trial == 2.0
