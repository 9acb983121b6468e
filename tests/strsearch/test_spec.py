"""The search spec: defaults, validation messages that name the field, fingerprints."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from strsearch.spec import SearchSpec


def test_three_fields_make_a_complete_spec() -> None:
    spec = SearchSpec.parse({"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9})
    assert spec.tolerance == 0.005
    assert spec.training.epochs == 30
    assert spec.search.s_init == [-5.0]
    assert spec.search.lambda_min < spec.search.lambda_max
    assert spec.version == 1
    again = SearchSpec.parse(spec.model_dump(mode="json"))
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    other = SearchSpec.parse({"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.95})
    assert other.fingerprint() != spec.fingerprint()


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"target_sparsity": 1.0}, "target_sparsity"),
        ({"target_sparsity": 0.0}, "target_sparsity"),
        ({"target_sparsity": 0.999, "tolerance": 0.01}, "inside (0, 1)"),
        ({"tolerance": 0}, "tolerance"),
        ({"search": {"lambda_min": 1e-2, "lambda_max": 1e-3}}, "lambda_min must be smaller"),
        ({"search": {"s_init": []}}, "search.s_init"),
        ({"search": {"s_init": [-5, -5]}}, "distinct"),
        ({"search": {"max_trials": 0}}, "search.max_trials"),
        ({"training": {"epochs": 2, "warmup_epochs": 3}}, "warmup_epochs"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer"),
        ({"model": "../etc/passwd"}, "model"),
        ({"resources": {"cpus_per_trial": 0}}, "resources.cpus_per_trial"),
        ({"resources": {"workers_per_trial": 0}}, "resources.workers_per_trial"),
        ({"resources": {"workers_per_trial": 2, "gpus_per_trial": 0.5}}, "whole number"),
        ({"resources": {"workers_per_trial": 3}}, "multiple of resources.workers_per_trial"),
        ({"unknown": 1}, "unknown"),
        ({"training": {"epoch": 3}}, "training.epoch"),
    ],
)
def test_bad_specs_name_the_field(patch: dict[str, object], field: str) -> None:
    data: dict[str, object] = {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9}
    data.update(patch)
    with pytest.raises(ValidationError) as info:
        SearchSpec.parse(data)
    assert field in str(info.value)


def test_spec_is_immutable() -> None:
    spec = SearchSpec.parse({"model": "m", "dataset": "d", "target_sparsity": 0.5})
    with pytest.raises(ValidationError):
        spec.target_sparsity = 0.6  # type: ignore[misc]


BASE = {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9}


@pytest.mark.parametrize(
    ("patch", "where", "message"),
    [
        ({"methods": []}, "methods", "at least 1"),
        ({"methods": ["str", "magic"]}, "methods.1", "Input should be"),
        ({"methods": ["gmp", "gmp"]}, "methods", "distinct"),
        ({"methods": ["gmp", "str_to_gmp"]}, "methods", "add 'str' to methods"),
        ({"methods": ["budget_dnw"]}, "comparison.budget", "need comparison.budget"),
        ({"methods": ["gmp"], "comparison": {"seeds": [1, 1]}}, "comparison.seeds", "distinct"),
        ({"comparison": {"prune_start": 0.5, "prune_end": 0.4}}, "comparison.prune_start", ""),
        ({"comparison": {"budget": {"fc": 1.5}}}, "comparison.budget.fc", "in [0, 1]"),
        (
            {"methods": ["gmp"], "resources": {"workers_per_trial": 2}, "training": {}},
            "resources.workers_per_trial",
            "must be 1",
        ),
        ({"training": {"penalty": "l3"}}, "training.penalty", ""),
    ],
)
def test_comparison_fields_are_checked_where_they_are(
    patch: dict[str, object], where: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SearchSpec.parse(BASE | patch)
    errors = caught.value.errors()
    assert [".".join(map(str, e["loc"])) for e in errors] == [where], errors
    assert message in errors[0]["msg"]


def test_a_comparisons_trial_budget_counts_searches_seeds_and_methods() -> None:
    assert SearchSpec.parse(BASE).trial_budget() == 12
    spec = SearchSpec.parse(
        BASE
        | {
            "methods": ["str", "str_l1", "gmp", "dnw"],
            "search": {"max_trials": 5},
            "comparison": {"seeds": [0, 1, 2]},
        }
    )
    assert spec.is_comparison
    # two searches of 5 trials, two more seeds of each, three seeds of two baselines
    assert spec.trial_budget() == 2 * (5 + 2) + 2 * 3


# The defaults of search.parallel_trials, search.early_stopping and resources.cpus_per_trial
# until 2026-12-06: a spec that spells them out keeps the fingerprint it had then.
OLD_DEFAULTS = {
    "search": {"parallel_trials": 2, "early_stopping": False},
    "resources": {"cpus_per_trial": 1.0},
}


def test_fields_added_later_leave_a_searchs_fingerprint_as_it_was() -> None:
    spec = SearchSpec.parse(BASE | OLD_DEFAULTS)
    # the fingerprint of this spec before comparisons and penalties existed
    assert spec.fingerprint() == "673a6bc37d"
    explicit = SearchSpec.parse(
        BASE | OLD_DEFAULTS | {"training": {"penalty": "l2"}, "methods": None}
    )
    assert explicit.fingerprint() == spec.fingerprint()
    l1 = BASE | OLD_DEFAULTS | {"training": {"penalty": "l1"}}
    assert SearchSpec.parse(l1).fingerprint() != "673a6bc37d"
    gmp = BASE | OLD_DEFAULTS | {"methods": ["gmp"]}
    assert SearchSpec.parse(gmp).fingerprint() != "673a6bc37d"
    assert SearchSpec.parse(BASE).fingerprint() != "673a6bc37d"  # the defaults changed
