"""Tests of the dataset registry and of third-party datasets found through entry points."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from str_core.config import DataConfig
from str_core.data import _registry
from str_core.data._registry import (
    ENTRY_POINT_GROUP,
    DatasetSplits,
    describe_datasets,
    list_datasets,
    load_dataset,
    register_dataset,
)

BUILTIN = ["cifar10", "digits", "imagefolder", "mnist1d"]


def _len(ds: object) -> int:
    assert isinstance(ds, Sized)
    return len(ds)


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the built-in datasets and no entry points read yet; changes are undone."""
    monkeypatch.setattr(_registry, "_DATASETS", dict(_registry._DATASETS))
    monkeypatch.setattr(_registry, "_plugins_loaded", False)


def _tiny_splits(cfg: DataConfig) -> DatasetSplits:
    x = torch.zeros(4, 2)
    y = torch.tensor([0, 1, 0, 1])
    ds = TensorDataset(x, y)
    return DatasetSplits(cfg.name, ds, None, ds, num_classes=2, input_shape=(2,))


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A folder for a fake installed distribution, put on sys.path; yields it and a module name."""
    module = f"strplugin_{uuid.uuid4().hex}"
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, module
    sys.modules.pop(module, None)


def _install(folder: Path, dist: str, entry_points: dict[str, str]) -> None:
    info = folder / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


PLUGIN_SOURCE = """
import torch
from torch.utils.data import TensorDataset
from str_core.data import DatasetSplits

def load(cfg):
    ds = TensorDataset(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]))
    return DatasetSplits(cfg.name, ds, ds, ds, num_classes=3, input_shape=(3,))

not_a_loader = 42
"""


def test_builtins_are_listed_and_described() -> None:
    assert list_datasets() == BUILTIN
    descriptions = describe_datasets()
    assert list(descriptions) == BUILTIN
    assert all(descriptions[name] for name in BUILTIN)


def test_unknown_name_raises_key_error_listing_valid_names() -> None:
    with pytest.raises(KeyError, match="unknown dataset 'nope'") as info:
        load_dataset(DataConfig(name="nope"))
    for name in BUILTIN:
        assert name in str(info.value)


def test_register_and_load() -> None:
    assert register_dataset("tiny", _tiny_splits, description="four zeros") is _tiny_splits
    assert "tiny" in list_datasets()
    assert describe_datasets()["tiny"] == "four zeros"
    splits = load_dataset(DataConfig(name="tiny", val_fraction=0.0))
    assert splits.name == "tiny"
    assert splits.num_classes == 2
    assert _len(splits.train) == 4


def test_duplicate_registration_raises() -> None:
    register_dataset("tiny", _tiny_splits, description="x")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("tiny", _tiny_splits, description="y")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", _tiny_splits, description="y")


def test_loader_returning_wrong_type_raises_type_error() -> None:
    def bad(cfg: DataConfig) -> Any:
        return {"train": []}

    register_dataset("bad", bad, description="returns a dict")
    with pytest.raises(TypeError, match="expected DatasetSplits"):
        load_dataset(DataConfig(name="bad"))


def test_entry_point_dataset_is_listed_and_loads_lazily(plugin_dir: tuple[Path, str]) -> None:
    folder, module = plugin_dir
    (folder / f"{module}.py").write_text(PLUGIN_SOURCE)
    _install(folder, "xyz", {"toy": f"{module}:load"})

    assert "toy" in list_datasets()
    assert "xyz" in describe_datasets()["toy"]
    assert module not in sys.modules  # listed, not imported yet

    splits = load_dataset(DataConfig(name="toy"))
    assert module in sys.modules
    assert isinstance(splits, DatasetSplits)
    assert splits.name == "toy"
    assert splits.num_classes == 3
    assert _len(splits.test) == 6


def test_entry_points_are_read_once(plugin_dir: tuple[Path, str]) -> None:
    folder, module = plugin_dir
    assert "toy" not in list_datasets()  # first lookup reads the (empty) group
    (folder / f"{module}.py").write_text(PLUGIN_SOURCE)
    _install(folder, "xyz", {"toy": f"{module}:load"})
    assert "toy" not in list_datasets()  # installed afterwards: not seen in this process


def test_broken_entry_point_fails_only_its_dataset(plugin_dir: tuple[Path, str]) -> None:
    folder, module = plugin_dir
    (folder / f"{module}.py").write_text(PLUGIN_SOURCE)
    _install(
        folder,
        "xyz",
        {"ghost": "no_such_module_anywhere:load", "number": f"{module}:not_a_loader"},
    )
    assert {"ghost", "number"} <= set(list_datasets())
    with pytest.raises(ImportError, match="ghost"):
        load_dataset(DataConfig(name="ghost"))
    with pytest.raises(TypeError, match="not callable"):
        load_dataset(DataConfig(name="number"))
    register_dataset("tiny", _tiny_splits, description="still works")
    assert load_dataset(DataConfig(name="tiny")).num_classes == 2


def test_entry_point_clashing_with_builtin_raises(plugin_dir: tuple[Path, str]) -> None:
    folder, module = plugin_dir
    (folder / f"{module}.py").write_text(PLUGIN_SOURCE)
    _install(folder, "xyz", {"digits": f"{module}:load"})
    with pytest.raises(ValueError, match="clashes"):
        list_datasets()
