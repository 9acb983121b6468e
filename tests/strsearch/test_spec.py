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
