"""End-to-end searches with real STR training on a local Ray."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from strsearch.spec import SearchSpec
from tests.workers.search_driver import cluster_env, kill_driver_when, run_driver
from workers import check_spec, experiment_name, run_search
from workers.tracking import JOB_TAG, KIND_TAG, TRIAL_TAG

# digits_cnn for 6 epochs: sparsity runs from ~30% (λ→0) to >95% (λ=5e-2) at this length
FAST = {
    "model": "digits_cnn",
    "dataset": "digits",
    "training": {"epochs": 6},
    "search": {"max_trials": 10, "parallel_trials": 2, "lambda_min": 1e-3, "lambda_max": 5e-2},
}


def _spec(**patch: Any) -> SearchSpec:
    return SearchSpec.parse({**FAST, **patch})


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        self.events.append(("start", trial_id))

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        self.events.append(("result", trial_id))

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        self.events.append(("failed" if failed else "done", trial_id))


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_search_lands_the_target_on_digits(tmp_path: Path) -> None:
    spec = _spec(target_sparsity=0.8, tolerance=0.01)
    listener = Recorder()
    result = run_search(spec, storage_path=tmp_path, listener=listener)

    assert result.reached, [(t.weight_decay, t.sparsity) for t in result.trials]
    best = result.best
    assert best is not None and best.status == "landed"
    assert best.sparsity is not None and abs(best.sparsity - 0.8) <= 0.01
    assert best.val_acc is not None and best.val_acc > 0.8
    assert set(best.budget) == {"features.0.conv", "features.1.conv", "features.3.conv", "fc"}
    assert all(0 <= v <= 1 for v in best.thresholds.values())
    assert len(result.trials) <= spec.search.max_trials
    assert len({t.weight_decay for t in result.trials}) == len(result.trials)  # no λ twice
    assert all(t.epochs == 6 for t in result.trials if t.status != "failed")
    # sparsity is monotone in λ across the trials of one s_init
    ordered = sorted((t.weight_decay, t.sparsity or 0) for t in result.trials)
    assert all(a[1] <= b[1] + 0.01 for a, b in itertools.pairwise(ordered))
    # the listener saw every trial start, report 6 epochs and finish
    done = [tid for kind, tid in listener.events if kind == "done"]
    assert sorted(done) == sorted(t.trial_id for t in result.trials)
    assert sum(kind == "result" for kind, _ in listener.events) == result.total_epochs
    assert Path(result.experiment_path).name == experiment_name(spec)
    json.dumps(result.to_dict())  # JSON-ready


def test_check_spec_names_the_problem() -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        check_spec(_spec(model="nope", target_sparsity=0.8))
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        check_spec(_spec(dataset="nope", target_sparsity=0.8))
    with pytest.raises(ValueError, match="takes inputs shaped"):
        check_spec(_spec(model="mnist1d_mlp", target_sparsity=0.8))


def _trial_dirs(experiment: Path) -> set[str]:
    return {p.name for p in experiment.glob("train_trial_*") if p.is_dir()}


def _started(trial_dir: str) -> str:
    """When Tune created a trial's folder: the ``YYYY-MM-DD_HH-MM-SS`` ending its name."""
    return "_".join(trial_dir.rsplit("_", 2)[-2:])


def _finished_trials(experiment: Path) -> int:
    """Trials whose result file already holds the last epoch."""
    count = 0
    for result_file in experiment.glob("*/result.json"):
        lines = result_file.read_text().strip().splitlines()
        if lines and json.loads(lines[-1]).get("epoch") == FAST["training"]["epochs"]:  # type: ignore[index]
            count += 1
    return count


@pytest.mark.slow
def test_interrupted_search_resumes_without_duplicates(
    tmp_path: Path, ray_head: dict[str, str]
) -> None:
    spec = _spec(target_sparsity=0.9, tolerance=0.01)
    experiment = tmp_path / experiment_name(spec)
    kill_driver_when(
        spec, tmp_path, cluster_env(ray_head), lambda: _finished_trials(experiment) >= 2
    )
    before = _trial_dirs(experiment)

    result = run_driver(spec, tmp_path, cluster_env(ray_head))
    trial_dirs = _trial_dirs(experiment)
    assert before <= trial_dirs  # the trials of the first run are part of the resumed experiment
    lambdas = [t["weight_decay"] for t in result["trials"]]
    assert len(lambdas) == len(set(lambdas)), lambdas  # no trial ran twice
    ids = {t["trial_id"] for t in result["trials"]}
    # Tune saves the experiment's state every few seconds, so a trial started after its last
    # save before the kill (even one that reported epochs) is forgotten by the restored
    # experiment, whose searcher suggests it again; its MLflow run is deleted at the job's end.
    # Only the first run's newest trials can be forgotten: one it kept must not be older.
    forgotten = {d for d in trial_dirs if not any(f"_{i}_" in d for i in ids)}
    assert forgotten <= before and len(forgotten) <= spec.search.parallel_trials, forgotten
    kept = before - forgotten
    assert all(_started(d) >= _started(k) for d in forgotten for k in kept), (forgotten, kept)
    assert result["reached"], result["trials"]
    _assert_one_mlflow_run_per_trial(result)


def _assert_one_mlflow_run_per_trial(result: dict[str, Any]) -> None:
    """The resumed search continued its parent run and every trial's child run: no duplicate,
    none left running, and no epoch logged twice."""
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    parent = client.get_run(result["mlflow_run_url"].rsplit("/", 1)[1])
    assert parent.info.status == "FINISHED"
    job = parent.data.tags[JOB_TAG]
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{JOB_TAG}` = '{job}'"
    )
    assert [r.info.run_id for r in runs if r.data.tags[KIND_TAG] == "job"] == [parent.info.run_id]
    children = [r for r in runs if r.data.tags[KIND_TAG] == "trial"]
    trial_ids = sorted(r.data.tags[TRIAL_TAG] for r in children)
    assert trial_ids == sorted(t["trial_id"] for t in result["trials"]), "duplicate or orphan"
    for run in children:
        assert run.info.status == "FINISHED", (run.data.tags[TRIAL_TAG], run.info.status)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "sparsity")]
        assert steps == list(range(1, FAST["training"]["epochs"] + 1))  # type: ignore[index]
