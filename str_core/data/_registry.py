"""The dataset registry: names to loaders, plus third-party loaders found through entry points.

A loader is a callable ``(DataConfig) -> DatasetSplits``. The built-in loaders register
themselves when ``str_core.data`` imports their modules. Other packages add datasets by declaring
an entry point in the group ``strsearch.datasets`` (``name = "pkg.module:loader"``); the group is
read once, on the first lookup, and each entry point's object is imported when its dataset is
first loaded, so a broken plugin only breaks its own dataset.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch.utils.data import Dataset

from str_core.config import DataConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "DatasetSplits",
    "Loader",
    "describe_datasets",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

ENTRY_POINT_GROUP = "strsearch.datasets"


@dataclass(frozen=True)
class DatasetSplits:
    """The splits of one dataset, ready for a ``DataLoader``.

    Attributes:
        name: the registered dataset name.
        train: training examples; items are ``(x, y)`` with ``x`` a float tensor of shape
            ``input_shape`` and ``y`` an ``int`` or a 0-dim ``long`` tensor.
        val: validation examples carved from the training data, or ``None`` when
            ``val_fraction == 0``.
        test: held-out test examples.
        num_classes: labels are in ``range(num_classes)``.
        input_shape: shape of one ``x``, without the batch dimension.
    """

    name: str
    train: Dataset[Any]
    val: Dataset[Any] | None
    test: Dataset[Any]
    num_classes: int
    input_shape: tuple[int, ...]


Loader = Callable[[DataConfig], DatasetSplits]
_L = TypeVar("_L", bound=Loader)


@dataclass
class _Entry:
    description: str
    loader: Loader | None = None
    entry_point: importlib.metadata.EntryPoint | None = None


_DATASETS: dict[str, _Entry] = {}
_plugins_loaded = False
_lock = threading.RLock()


def register_dataset(name: str, loader: _L, *, description: str) -> _L:
    """Register ``loader`` under ``name``.

    Args:
        name: the name ``DataConfig.name`` selects the dataset by.
        loader: callable building the splits from a ``DataConfig``.
        description: one line shown when datasets are listed.

    Returns:
        ``loader``, unchanged.

    Raises:
        ValueError: if ``name`` is already registered.
    """
    with _lock:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = _Entry(description=description, loader=loader)
    return loader


def list_datasets() -> list[str]:
    """Sorted names of all datasets, built-in and from entry points."""
    _discover_plugins()
    return sorted(_DATASETS)


def describe_datasets() -> dict[str, str]:
    """Each dataset's one-line description, keyed by name in sorted order."""
    _discover_plugins()
    return {name: _DATASETS[name].description for name in sorted(_DATASETS)}


def load_dataset(cfg: DataConfig) -> DatasetSplits:
    """Build the splits of the dataset ``cfg.name``.

    Args:
        cfg: which dataset, where it lives and how it is split.

    Returns:
        The dataset's train/validation/test splits.

    Raises:
        KeyError: for an unknown name; the message lists the valid names.
        ImportError: if the dataset's entry point cannot be imported.
        TypeError: if a loader returns something other than ``DatasetSplits``.
    """
    splits = _get_loader(cfg.name)(cfg)
    if not isinstance(splits, DatasetSplits):
        raise TypeError(
            f"loader of dataset {cfg.name!r} returned {type(splits).__name__}, "
            "expected DatasetSplits"
        )
    return splits


def _get_loader(name: str) -> Loader:
    _discover_plugins()
    with _lock:
        entry = _DATASETS.get(name)
        if entry is None:
            valid = ", ".join(sorted(_DATASETS))
            raise KeyError(f"unknown dataset {name!r}; valid: {valid}")
        if entry.loader is None:
            entry.loader = _load_entry_point(name, entry)
        return entry.loader


def _load_entry_point(name: str, entry: _Entry) -> Loader:
    ep = entry.entry_point
    assert ep is not None  # an entry without a loader always comes from an entry point
    try:
        obj = ep.load()
    except Exception as e:
        raise ImportError(
            f"dataset {name!r}: cannot load entry point {ep.value!r} "
            f"(group {ENTRY_POINT_GROUP!r}): {e}"
        ) from e
    if not callable(obj):
        raise TypeError(f"dataset {name!r}: entry point {ep.value!r} is not callable")
    loader: Loader = obj
    return loader


def _discover_plugins() -> None:
    """Read the entry-point group once and register each entry point by name (not yet imported).

    Raises:
        ValueError: if an entry point's name is already registered.
    """
    global _plugins_loaded  # noqa: PLW0603 - the registry is module state by design
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _DATASETS:
                raise ValueError(
                    f"entry point {ep.name} = {ep.value!r} (group {ENTRY_POINT_GROUP!r}) clashes "
                    f"with the already registered dataset {ep.name!r}"
                )
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            _DATASETS[ep.name] = _Entry(description=f"{ep.value} (from {dist})", entry_point=ep)
