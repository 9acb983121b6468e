"""Backing up and repairing a Tune experiment's saved state (workers.experiment_state)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from strsearch.spec import SearchSpec
from workers import run_search
from workers.experiment_state import (
    BACKUP_DIR,
    StateBackup,
    back_up,
    complete,
    prepare_resume,
    repair,
)

STATE = "experiment_state-2026-01-01_00-00-00.json"
SEARCHER = "sparsity-searcher-state-2026-01-01_00-00-00.json"
GENERATOR = "search_gen_state-2026-01-01_00-00-00.json"  # a pickle, despite its name


def _experiment(root: Path) -> Path:
    """An experiment folder with complete state files of each kind."""
    experiment = root / "exp"
    experiment.mkdir()
    (experiment / "tuner.pkl").write_bytes(pickle.dumps({"param_space": {"spec": 1}}))
    (experiment / STATE).write_text(json.dumps({"trial_data": [["a", "b"]]}))
    (experiment / SEARCHER).write_text(json.dumps({"lanes": [1, 2]}))
    (experiment / GENERATOR).write_bytes(pickle.dumps({"counter": 2}))
    (experiment / "train_trial_1").mkdir()
    return experiment


def _truncate(path: Path, keep: int = 0) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("name", ["tuner.pkl", STATE, SEARCHER, GENERATOR])
def test_complete_tells_whole_files_from_truncated_ones(tmp_path: Path, name: str) -> None:
    path = _experiment(tmp_path) / name
    whole = path.read_bytes()
    assert complete(path)
    for keep in (0, 1, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:keep])
        assert not complete(path), keep
    assert not complete(tmp_path / "missing.json")


def test_back_up_copies_complete_files_once_and_skips_truncated_ones(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    seen: dict[str, tuple[int, int]] = {}
    assert back_up(experiment, seen) == sorted([GENERATOR, SEARCHER, STATE, "tuner.pkl"])
    assert back_up(experiment, seen) == []  # nothing changed
    good = (experiment / STATE).read_bytes()
    assert (experiment / BACKUP_DIR / STATE).read_bytes() == good

    _truncate(experiment / STATE, 10)  # a copy in progress
    assert back_up(experiment, seen) == []
    assert (experiment / BACKUP_DIR / STATE).read_bytes() == good
    (experiment / STATE).write_text(json.dumps({"trial_data": []}))  # the copy completed
    assert back_up(experiment, seen) == [STATE]
    assert json.loads((experiment / BACKUP_DIR / STATE).read_text()) == {"trial_data": []}


def test_repair_puts_the_last_complete_copy_back(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    back_up(experiment, {})
    originals = {p.name: p.read_bytes() for p in experiment.iterdir() if p.is_file()}
    for name in (STATE, GENERATOR):
        _truncate(experiment / name)
    assert repair(experiment)
    assert {p.name: p.read_bytes() for p in experiment.iterdir() if p.is_file()} == originals


def test_repair_sets_aside_a_truncated_file_without_a_copy(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    older = experiment / "experiment_state-2025-12-31_00-00-00.json"
    older.write_text(json.dumps({"trial_data": []}))
    _truncate(experiment / STATE)
    assert repair(experiment)  # Tune reads the earlier session's state
    assert not (experiment / STATE).exists()
    assert (experiment / f"{STATE}.truncated").exists()

    older.unlink()
    assert not repair(experiment)  # no experiment state left


def test_prepare_resume_sets_a_damaged_experiment_aside(tmp_path: Path) -> None:
    assert not prepare_resume(str(tmp_path / "nothing-here"))
    experiment = _experiment(tmp_path)
    assert prepare_resume(str(experiment))
    _truncate(experiment / "tuner.pkl")
    assert not prepare_resume(str(experiment))
    assert not experiment.exists()  # a fresh experiment may start at this path
    (aside,) = tmp_path.glob("exp.unrestorable-*")
    assert (aside / "train_trial_1").is_dir()


def test_the_callback_pickles_without_what_it_has_seen(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    callback = StateBackup(str(experiment))
    callback.on_experiment_end(trials=[])
    assert (experiment / BACKUP_DIR / STATE).is_file()
    copy = pickle.loads(pickle.dumps(callback))
    assert copy.experiment == str(experiment)
    (experiment / BACKUP_DIR / STATE).unlink()
    copy.on_step_end(iteration=1, trials=[])  # a restored callback looks at every file again
    assert (experiment / BACKUP_DIR / STATE).is_file()


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_a_search_whose_saved_state_was_truncated_resumes_with_its_trials(tmp_path: Path) -> None:
    # one trial of two epochs: what matters is the restore, not the search
    spec = SearchSpec.parse(
        {
            "model": "digits_cnn",
            "dataset": "digits",
            "target_sparsity": 0.35,
            "tolerance": 0.05,
            "training": {"epochs": 2},
            "search": {
                "max_trials": 1,
                "parallel_trials": 1,
                "lambda_min": 1e-3,
                "lambda_max": 5e-2,
            },
        }
    )
    first = run_search(spec, storage_path=tmp_path)
    experiment = Path(first.experiment_path)
    assert (experiment / BACKUP_DIR).is_dir()
    # what a driver killed while Tune copied its state to storage leaves behind
    for path in experiment.glob("experiment_state-*.json"):
        _truncate(path)

    again = run_search(spec, storage_path=tmp_path)
    # Without the repair, Tune fails to read the state and starts over: a new trial, whose
    # config lacks the search's spec, fails.
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in first.trials]
    assert [t.sparsity for t in again.trials] == [t.sparsity for t in first.trials]
    assert all(t.status != "failed" for t in again.trials), again.trials
    assert again.experiment_path == first.experiment_path
