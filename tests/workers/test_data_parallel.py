"""A search trial trained data-parallel by Ray Train (2 gloo workers on the local Ray)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from str_core.train import LAST_CHECKPOINT
from strsearch.spec import Resources, SearchSpec
from tests.workers.search_driver import cluster_env, kill_driver_when, run_driver
from workers import experiment_name, run_search
from workers.data_parallel import DRIVER_RESOURCES, RUN_NAME, trial_resources

SPEC = {
    "model": "digits_cnn",
    "dataset": "digits",
    "target_sparsity": 0.7,  # the first λ (0.013) trains to over 50% accuracy in 3 epochs
    "tolerance": 0.01,
    "training": {"epochs": 3},
    "search": {"max_trials": 1, "parallel_trials": 1, "lambda_min": 1e-3, "lambda_max": 5e-2},
    "resources": {"cpus_per_trial": 1, "workers_per_trial": 2},
}


class Results:
    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.finished: list[bool] = []

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        pass

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        self.results.append(result)

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        self.finished.append(failed)


@pytest.mark.usefixtures("local_ray")
def test_a_data_parallel_trial_with_2_workers(tmp_path: Path) -> None:
    spec = SearchSpec.parse(SPEC)
    listener = Results()
    result = run_search(spec, storage_path=tmp_path, listener=listener)

    assert listener.finished == [False]
    (trial,) = result.trials
    assert trial.status != "failed", trial.error
    assert trial.epochs == 3
    assert trial.sparsity is not None and 0 < trial.sparsity < 1
    assert trial.val_acc is not None and trial.val_acc > 0.5
    assert set(trial.budget) == {"features.0.conv", "features.1.conv", "features.3.conv", "fc"}
    # every epoch reached Tune (and the searcher) with what a single-process trial reports
    assert [r["epoch"] for r in listener.results] == [1, 2, 3]
    for report in listener.results:
        assert report["world_size"] == 2  # two processes trained it
        assert 0 <= report["sparsity"] <= 1 and 0 <= report["val_acc"] <= 1
        assert report["weight_decay"] == trial.weight_decay
        assert "sparsity/fc" in report and "threshold/fc" in report
    assert listener.results[-1]["sparsity"] == trial.sparsity
    # the Tune trial holds its last two checkpoints; the Train run's scratch folder is gone
    assert trial.path is not None
    trial_dir = Path(trial.path)
    kept = sorted(trial_dir.glob("checkpoint_*"))
    assert len(kept) == 2
    checkpoint = kept[-1]
    state = torch.load(checkpoint / LAST_CHECKPOINT, weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert not (trial_dir / RUN_NAME).exists()


def test_resources_of_a_data_parallel_trial() -> None:
    single = Resources(cpus_per_trial=2, gpus_per_trial=1)
    assert trial_resources(single) == {"cpu": 2, "gpu": 1}
    parallel = Resources(cpus_per_trial=2, gpus_per_trial=1, workers_per_trial=4)
    assert trial_resources(parallel) == DRIVER_RESOURCES  # the workers reserve theirs
    assert DRIVER_RESOURCES["cpu"] == 0 and DRIVER_RESOURCES["gpu"] == 0


def _reported_epochs(experiment: Path) -> list[int]:
    epochs: list[int] = []
    for result_file in experiment.glob("*/result.json"):
        lines = result_file.read_text().strip().splitlines()
        epochs += [int(json.loads(line)["epoch"]) for line in lines if line]
    return epochs


def _saved_epoch(experiment: Path) -> int:
    """The epoch of the newest trial checkpoint that the experiment's saved state names, or 0.

    Tune saves that state every 10 s and after every second checkpoint of a trial, not after each
    epoch, so a driver killed in between is restored from an earlier checkpoint (or from none)."""
    saved = [0]
    for state in experiment.glob("experiment_state-*.json"):
        try:
            text = state.read_text()
            json.loads(text)
        except (OSError, ValueError):  # being written
            continue
        saved += [int(index) + 1 for index in re.findall(r"checkpoint_(\d{6})", text)]
    return max(saved)


@pytest.mark.slow
def test_an_interrupted_data_parallel_trial_resumes_from_its_checkpoint(
    tmp_path: Path, ray_head: dict[str, str]
) -> None:
    epochs = 5
    spec = SearchSpec.parse({**SPEC, "training": {"epochs": epochs}})
    experiment = tmp_path / experiment_name(spec)
    kill_driver_when(
        spec,
        tmp_path,
        cluster_env(ray_head),
        lambda: max(_reported_epochs(experiment), default=0) >= 2 and _saved_epoch(experiment) >= 1,
    )
    before = _reported_epochs(experiment)
    assert 2 <= max(before) < epochs, before

    result = run_driver(spec, tmp_path, cluster_env(ray_head))
    (trial,) = result["trials"]
    assert trial["status"] != "failed", trial
    assert trial["epochs"] == epochs
    after = _reported_epochs(experiment)
    assert after[: len(before)] == before, after
    # the restarted trial went on from a saved checkpoint, not from the start, and reported every
    # epoch after it once (the epochs between that checkpoint and the kill again)
    resumed = after[len(before) :]
    assert resumed == list(range(resumed[0], epochs + 1)), after
    assert 2 <= resumed[0] <= max(before) + 1, after
