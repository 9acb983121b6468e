"""The names a job may use, without importing torch: built-in models/datasets plus plugin names.

The service validates submissions with this module (it never imports ``str_core``). The built-in
table lists each name's input rank (dimensions of one example, without the batch), so a model
that cannot take a dataset's inputs is refused at submission; ``tests/strsearch/test_catalog.py``
checks the table against ``str_core``'s registries so the two cannot drift apart. Plugins
(entry-point groups ``strsearch.models`` / ``strsearch.datasets``) are known by their entry-point
names only; their compatibility is checked by the agent when the job runs.
"""

from __future__ import annotations

import functools
import importlib.metadata

MODEL_GROUP = "strsearch.models"
DATASET_GROUP = "strsearch.datasets"

#: built-in model name -> input rank
BUILTIN_MODELS: dict[str, int] = {
    "digits_cnn": 3,
    "digits_mlp": 3,
    "mnist1d_cnn": 2,
    "mnist1d_mlp": 2,
    "mobilenet_v1": 3,
    "resnet18": 3,
    "resnet18_cifar": 3,
    "resnet20": 3,
    "resnet50": 3,
    "resnet50_cifar": 3,
}

#: built-in dataset name -> input rank
BUILTIN_DATASETS: dict[str, int] = {
    "cifar10": 3,
    "digits": 3,
    "imagefolder": 3,
    "mnist1d": 2,
}

#: datasets read from a folder on the agent's machine (``data_root`` is required)
DISK_DATASETS = frozenset({"cifar10", "imagefolder"})


@functools.cache
def _plugins(group: str) -> frozenset[str]:
    # Scanning the installed distributions takes milliseconds: once per process (a plugin
    # installed later is seen after a restart).
    return frozenset(ep.name for ep in importlib.metadata.entry_points(group=group))


def model_names() -> list[str]:
    """Every model name a job may use."""
    return sorted(set(BUILTIN_MODELS) | _plugins(MODEL_GROUP))


def dataset_names() -> list[str]:
    """Every dataset name a job may use."""
    return sorted(set(BUILTIN_DATASETS) | _plugins(DATASET_GROUP))


def check_names(model: str, dataset: str, data_root: str | None) -> list[tuple[str, str]]:
    """Problems with a job's model and dataset, as ``(field, message)`` pairs (empty when fine)."""
    problems: list[tuple[str, str]] = []
    models, datasets = model_names(), dataset_names()
    if model not in models:
        problems.append(("model", f"unknown model {model!r}; known: {', '.join(models)}"))
    if dataset not in datasets:
        problems.append(("dataset", f"unknown dataset {dataset!r}; known: {', '.join(datasets)}"))
    if dataset in DISK_DATASETS and not data_root:
        problems.append(("data_root", f"dataset {dataset!r} is read from a folder: set data_root"))
    model_rank, data_rank = BUILTIN_MODELS.get(model), BUILTIN_DATASETS.get(dataset)
    if model_rank is not None and data_rank is not None and model_rank != data_rank:
        problems.append(
            (
                "model",
                f"model {model!r} takes {model_rank}-d examples but dataset {dataset!r} "
                f"gives {data_rank}-d ones",
            )
        )
    return problems
