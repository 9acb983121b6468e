"""Datasets: a registry of loaders that turn a ``DataConfig`` into train/validation/test splits.

Built in: ``digits`` and ``mnist1d`` (no files needed), ``cifar10`` and ``imagefolder`` (read
from ``DataConfig.root``). Each module below registers its loaders when imported here, explicitly;
third-party loaders come from the ``strsearch.datasets`` entry-point group.
"""

from str_core.data import builtin, cifar, imagefolder
from str_core.data._registry import (
    ENTRY_POINT_GROUP,
    DatasetSplits,
    Loader,
    describe_datasets,
    list_datasets,
    load_dataset,
    register_dataset,
)
from str_core.data.builtin import load_digits, load_mnist1d
from str_core.data.cifar import load_cifar10
from str_core.data.imagefolder import load_imagefolder
from str_core.data.splits import split_indices

__all__ = [
    "ENTRY_POINT_GROUP",
    "DatasetSplits",
    "Loader",
    "builtin",
    "cifar",
    "describe_datasets",
    "imagefolder",
    "list_datasets",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_imagefolder",
    "load_mnist1d",
    "register_dataset",
    "split_indices",
]
