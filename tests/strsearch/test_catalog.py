"""The torch-free catalog agrees with str_core's registries and explains what it refuses."""

from __future__ import annotations

import pytest

from str_core.config import DataConfig
from str_core.data import list_datasets
from str_core.models import get_model_info, list_models
from strsearch import catalog


def test_builtin_models_match_the_registry() -> None:
    registered = {name: len(get_model_info(name).input_shape) for name in list_models()}
    assert registered == catalog.BUILTIN_MODELS


def test_builtin_datasets_match_the_registry() -> None:
    assert set(list_datasets()) == set(catalog.BUILTIN_DATASETS)


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_builtin_dataset_ranks_match_the_data(name: str) -> None:
    from str_core.data import load_dataset

    splits = load_dataset(DataConfig(name=name))
    assert len(splits.input_shape) == catalog.BUILTIN_DATASETS[name]


def test_a_valid_pair_has_no_problem() -> None:
    assert catalog.check_names("digits_cnn", "digits", None) == []


def test_unknown_names_are_named_with_the_valid_ones() -> None:
    problems = dict(catalog.check_names("nope", "nada", None))
    assert "digits_cnn" in problems["model"]
    assert "mnist1d" in problems["dataset"]


def test_rank_mismatch_and_missing_root_are_refused() -> None:
    problems = dict(catalog.check_names("mnist1d_cnn", "cifar10", None))
    assert "2-d" in problems["model"]
    assert "data_root" in problems
