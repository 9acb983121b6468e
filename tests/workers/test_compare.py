"""Comparison jobs: the rows they train, their table, and one run end to end through the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from strsearch.client import Client
from strsearch.spec import SearchSpec
from tests.service.live_api import LiveApi
from tests.workers.agent_processes import AgentProcess, wait_for
from workers.compare import check_comparison, comparison_rows
from workers.comparison import method_rows
from workers.result import SearchResult, TrialSummary
from workers.tracking import JOB_TAG, KIND_TAG, PARENT_TAG
from workers.trial_config import Row, method_trial, variant_spec

BASE: dict[str, Any] = {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.6}


def _spec(**patch: Any) -> SearchSpec:
    return SearchSpec.parse(BASE | patch)


def _trial(trial_id: str, method: str, **values: Any) -> TrialSummary:
    fields: dict[str, Any] = {
        "weight_decay": 1e-3,
        "s_init": None,
        "status": "landed",
        "epochs": 3,
        "sparsity": 0.6,
        "val_acc": 0.9,
        "test_acc": 0.9,
        "flops": 1e5,
        "dense_flops": 2e5,
    }
    return TrialSummary(trial_id, method=method, **(fields | values))


def _search(best: TrialSummary | None) -> SearchResult:
    trials = [] if best is None else [best]
    return SearchResult(0.6, 0.005, best is not None, best, trials, "/x")


def test_each_ablation_changes_one_thing_and_searches_at_the_first_seed() -> None:
    spec = _spec(methods=["str", "str_l1", "str_exp", "str_channel"], comparison={"seeds": [4, 5]})
    changed = {m: variant_spec(spec, m) for m in ("str", "str_l1", "str_exp", "str_channel")}
    assert changed["str"].training.penalty == "l2" and changed["str"].methods is None
    assert changed["str_l1"].training.penalty == "l1"
    assert changed["str_exp"].reparam.threshold_fn == "exp"
    assert changed["str_channel"].reparam.granularity == "channel"
    assert {v.search.seed for v in changed.values()} == {4}
    with pytest.raises(ValueError, match="not a searched STR method"):
        variant_spec(spec, "gmp")


def test_rows_reuse_the_searched_lambda_and_transfer_the_learnt_budget() -> None:
    spec = _spec(methods=["str", "gmp", "str_to_dnw"], comparison={"seeds": [0, 1, 2]})
    budget = {"features.0.conv": 0.2, "fc": 0.3}
    best = _trial("t1", "str", weight_decay=3e-3, s_init=-5.0, budget=budget)
    rows = comparison_rows(spec, {"str": _search(best)})
    assert [(r.method, r.seed) for r in rows] == [
        ("str", 1), ("str", 2), ("gmp", 0), ("gmp", 1), ("gmp", 2),
        ("str_to_dnw", 0), ("str_to_dnw", 1), ("str_to_dnw", 2),
    ]  # fmt: skip
    assert rows[0].weight_decay == 3e-3 and rows[0].s_init == -5.0
    assert rows[2].weight_decay == spec.comparison.weight_decay and rows[2].budget is None
    assert rows[-1].budget == budget
    # a search that trained nothing leaves its method (and the transfer) without rows
    assert [r.method for r in comparison_rows(spec, {"str": _search(None)})] == ["gmp"] * 3


def test_a_row_becomes_the_trial_it_names() -> None:
    spec = _spec(
        methods=["str_l1", "erk", "budget_gmp"],
        comparison={"seeds": [7], "budget": {"fc": 0.5}, "prune_start": 0.2, "prune_end": 0.5},
    )
    str_trial = method_trial(spec, Row("str_l1", 7, 2e-3, s_init=-4.0))
    assert str_trial.prune is None and str_trial.str_config is not None
    assert str_trial.str_config.s_init == -4.0
    assert (str_trial.train.seed, str_trial.train.penalty) == (7, "l1")
    erk = method_trial(spec, Row("erk", 7, 5e-4))
    assert erk.str_config is None and erk.prune is not None
    assert (erk.prune.method, erk.prune.allocation) == ("gmp", "erk")
    assert (erk.prune.start_fraction, erk.prune.end_fraction) == (0.2, 0.5)
    assert erk.prune.target_sparsity == 0.6 and erk.train.weight_decay == 5e-4
    given = method_trial(spec, Row("budget_gmp", 7, 5e-4))
    assert given.prune is not None and given.prune.budget == {"fc": 0.5}


def test_the_table_has_one_row_per_method_with_mean_and_std_over_seeds() -> None:
    trials = [
        _trial("a", "gmp", seed=0, test_acc=0.8, nonzero=10.0, params=100.0),
        _trial("b", "gmp", seed=1, test_acc=0.9, nonzero=12.0, params=100.0),
        _trial("c", "dnw", seed=0, status="failed", sparsity=None, error="boom"),
        _trial("d", "dnw", seed=1, test_acc=0.7, sparsity=0.7, status="above"),
    ]
    gmp, dnw = method_rows(["gmp", "dnw"], trials)
    assert gmp.seeds == [0, 1] and gmp.failed == 0 and gmp.landed == 2
    assert gmp.test_acc_mean == pytest.approx(0.85)
    assert gmp.test_acc_std == pytest.approx(0.0707107, rel=1e-5)
    assert gmp.nonzero_mean == pytest.approx(11.0) and gmp.params == 100.0
    assert dnw.seeds == [1] and dnw.failed == 1 and dnw.landed == 0
    assert (dnw.test_acc_mean, dnw.test_acc_std) == (0.7, 0.0)


def test_a_budget_must_name_the_models_layers() -> None:
    spec = _spec(methods=["budget_gmp"], comparison={"budget": {"fc": 0.5, "nope": 0.1}})
    with pytest.raises(ValueError, match=r"unknown \['nope'\], missing \['features.0.conv'"):
        check_comparison(spec)


# A comparison through the API: the STR search, GMP and the transfer, two seeds each (the CLI test
# trains DNW and a given budget).
COMPARISON: dict[str, Any] = {
    "model": "digits_cnn",
    "dataset": "digits",
    "target_sparsity": 0.5,
    "tolerance": 0.05,
    "training": {"epochs": 2},
    "search": {"max_trials": 3, "parallel_trials": 2, "lambda_min": 1e-3, "lambda_max": 5e-2},
    "methods": ["str", "gmp", "str_to_gmp"],
    "comparison": {"seeds": [0, 1]},
}


@pytest.mark.slow
def test_a_comparison_job_runs_end_to_end_through_the_api(
    make_api: Callable[[float], LiveApi],
    agents: Callable[..., AgentProcess],
    users: Callable[[LiveApi], Client],
) -> None:
    api = make_api(5)
    user = users(api)
    job_id = user.submit(COMPARISON)["id"]
    agent = agents(api, "comparer", "--once")
    job = wait_for(
        lambda: (j := user.job(job_id))["state"] in ("succeeded", "unreached", "failed") and j,
        "the comparison to finish",
        agents=(agent,),
        timeout=300,
    )
    assert job["state"] in ("succeeded", "unreached"), (job, agent.log())
    result = job["result"]
    assert result["kind"] == "comparison" and result["methods"] == COMPARISON["methods"]
    table = {row["method"]: row for row in result["table"]}
    assert list(table) == COMPARISON["methods"]
    for method in ("gmp", "str_to_gmp"):
        row = table[method]
        assert row["seeds"] == [0, 1] and row["failed"] == 0, row
        # the baselines land on the target itself, to the rounding of per-layer counts
        assert row["sparsity_mean"] == pytest.approx(0.5, abs=1e-3), row
        assert row["test_acc_mean"] > 0.3, row  # 2 epochs: well above chance (10 %)
        assert row["flops_mean"] < row["dense_flops"]
    assert table["str"]["seeds"] == [0, 1]
    search = result["searches"]["str"]
    assert (job["state"] == "succeeded") == (search["reached"] is True)
    # the transfer trained STR's learnt budget: its layers follow the str search's best
    learnt = search["best"]["budget"]
    transfer = [t for t in result["trials"] if t["method"] == "str_to_gmp"]
    dense_first = min(learnt, key=lambda name: learnt[name])
    assert all(t["budget"][dense_first] == min(t["budget"].values()) for t in transfer), (
        learnt,
        transfer,
    )
    progress = job["progress"]
    assert progress["trials_total"] == SearchSpec.parse(COMPARISON).trial_budget()
    assert {t["method"] for t in progress["trials"]} == set(COMPARISON["methods"])

    # MLflow: the comparison's run holds the table and plot, the search is nested under it
    client = MlflowClient()
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{JOB_TAG}` = '{job_id}' and tags.`{KIND_TAG}` = 'job'",
    )
    assert len(runs) == 1
    parent = runs[0]
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.csv", "comparison.json", "accuracy_vs_flops.png"} <= artifacts
    assert parent.data.metrics["gmp/sparsity_mean"] == pytest.approx(0.5, abs=1e-3)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
    )
    kinds = sorted(r.data.tags[KIND_TAG] for r in children)
    # one nested search and 5 trials: str at seed 1, and 2 seeds of each other method
    assert kinds == ["job"] + ["trial"] * 5, kinds
