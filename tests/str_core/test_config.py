"""Config dataclasses: validation and the asdict / from_dict round trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from str_core.config import PruneConfig, TrainConfig


@pytest.mark.parametrize(
    "cfg",
    [
        PruneConfig(),
        PruneConfig(target_sparsity=0.5, method="dnw", allocation="erk", end_fraction=1.0),
        PruneConfig(method="gmp", allocation="given", budget={"conv1": 0.5, "fc": 0.0}),
    ],
)
def test_prune_config_round_trips_through_json(cfg: PruneConfig) -> None:
    data = json.loads(json.dumps(dataclasses.asdict(cfg)))
    back = PruneConfig.from_dict(data)
    assert back == cfg
    assert back.budget is None or type(back.budget) is dict


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_sparsity": 0.0}, "target_sparsity"),
        ({"target_sparsity": 1.0}, "target_sparsity"),
        ({"method": "snip"}, "method"),
        ({"allocation": "random"}, "allocation"),
        ({"start_fraction": 0.6, "end_fraction": 0.6}, "start_fraction < end_fraction"),
        ({"start_fraction": -0.1}, "start_fraction"),
        ({"end_fraction": 1.5}, "end_fraction"),
        ({"allocation": "given"}, "needs a budget"),
        ({"budget": {"fc": 0.5}}, "only used with allocation 'given'"),
        ({"allocation": "given", "budget": {"fc": 1.5}}, r"\[0, 1\]"),
        ({"allocation": "given", "budget": {"fc": "x"}}, "not a number"),
        ({"allocation": "given", "budget": {}}, "empty"),
    ],
)
def test_prune_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PruneConfig(**kwargs)


def test_prune_config_keeps_its_own_copy_of_the_budget() -> None:
    budget = {"fc": 0.5}
    cfg = PruneConfig(allocation="given", budget=budget)
    budget["fc"] = 0.9
    assert cfg.budget == {"fc": 0.5}
    with pytest.raises(ValueError, match="unknown field"):
        PruneConfig.from_dict({"target": 0.9})


def test_train_config_penalty() -> None:
    assert TrainConfig().penalty == "l2"
    cfg = TrainConfig(penalty="l1", weight_decay=1e-3)
    assert TrainConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    old = {k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k != "penalty"}
    assert TrainConfig.from_dict(old).penalty == "l2"  # configs saved before the field existed
    with pytest.raises(ValueError, match="penalty"):
        TrainConfig(penalty="l0")  # type: ignore[arg-type]
