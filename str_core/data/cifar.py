"""CIFAR-10 read from the official python-version folder ``cifar-10-batches-py``.

The folder holds ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``, each
a pickled dict with byte-string keys: ``b"data"`` (uint8, ``N x 3072``, each row the red, green
and blue 32x32 planes in turn) and ``b"labels"`` (``N`` ints), and ``b"label_names"`` in the meta
file. These files come from users, so they are read with :class:`RestrictedUnpickler`, which can
rebuild numpy arrays and nothing else: no other global can be imported while loading.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from str_core.config import DataConfig
from str_core.data._registry import DatasetSplits, register_dataset
from str_core.data.splits import split_indices
from str_core.data.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    Transform,
    to_tensor,
)

__all__ = [
    "CIFAR10_LAYOUT",
    "RestrictedUnpickler",
    "TensorImageDataset",
    "cifar10_transforms",
    "load_cifar10",
]

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
FOLDER = "cifar-10-batches-py"
CIFAR10_LAYOUT = (
    f"expected a {FOLDER} folder (or its parent) holding {', '.join(TRAIN_FILES)}, "
    f"{TEST_FILE} and {META_FILE}"
)
NUM_CLASSES = 10
IMAGE_SIZE = 32


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` that only does what pickle protocol 2 needs.

    Python 3 writes ``bytes`` into protocol-2 pickles as ``_codecs.encode(text, "latin1")``.
    """
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("only latin-1 encoding of a str is allowed")
    return text.encode("latin1")


def _numpy_reconstruct() -> Any:
    # numpy >= 2 moved numpy.core to numpy._core (importing the old name warns).
    try:
        module = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # pragma: no cover - numpy < 2
        module = importlib.import_module("numpy.core.multiarray")
    return module._reconstruct


# Every global a CIFAR-10 batch file may name, and what it resolves to.
_ALLOWED_GLOBALS: Mapping[tuple[str, str], Any] = MappingProxyType(
    {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR batch files: numpy arrays, dicts, lists, numbers and strings only.

    Python 2 pickles (the official files) are read with ``encoding="bytes"``. ``find_class``
    allows exactly numpy's array reconstruction (``_reconstruct`` under either numpy module
    name, ``numpy.ndarray``, ``numpy.dtype``) and latin-1 ``_codecs.encode`` (how Python 3
    protocol-2 pickles store bytes); any other global raises ``pickle.UnpicklingError``.
    """

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global; refuse everything else."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: CIFAR-10 files contain only numpy "
                "arrays, lists and strings"
            ) from None


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with path.open("rb") as f:
            obj = RestrictedUnpickler(f).load()
    except OSError:
        raise
    except Exception as e:  # any other failure to unpickle means the content is not a batch
        raise ValueError(f"{path}: not a readable CIFAR-10 batch file: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _load_batch(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Read one batch file into ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``."""
    batch = _unpickle(path)
    missing = [k.decode() for k in (b"data", b"labels") if k not in batch]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; {CIFAR10_LAYOUT}")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{path}: b'data' must be a 2-D uint8 array")
    if data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
        raise ValueError(f"{path}: b'data' rows must have 3072 values, got {data.shape[1]}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: b'labels' must be {data.shape[0]} integers")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels must lie in [0, {NUM_CLASSES})")
    # Each row holds the R, G and B planes in turn: (N, 3072) -> (N, 3, 32, 32).
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
    return images, labels.astype(np.int64)


def _resolve_root(cfg: DataConfig) -> Path:
    if cfg.root is None:
        raise ValueError(f"dataset {cfg.name!r}: `root` is required; {CIFAR10_LAYOUT}")
    path = Path(cfg.root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; {CIFAR10_LAYOUT}")
    if (path / FOLDER).is_dir():
        path = path / FOLDER
    missing = [n for n in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (path / n).is_file()]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}; {CIFAR10_LAYOUT}")
    return path


class TensorImageDataset(Dataset[tuple[Tensor, int]]):
    """In-memory uint8 images ``(N, C, H, W)`` with labels; ``transform`` runs per item.

    Items are ``(transform(to_tensor(image)), label)``.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: Transform) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(to_tensor(self.images[index])), int(self.labels[index])


def cifar10_transforms(image_size: int, augment: bool) -> tuple[Transform, Transform]:
    """Training and evaluation transforms for ``(3, 32, 32)`` float images.

    Training: random 32x32 crop of the image zero-padded by 4 pixels and a random horizontal
    flip (when ``augment``); both: resize to ``image_size`` if it is not 32, then normalise with
    the CIFAR-10 channel statistics.
    """
    resize: list[Transform] = [] if image_size == IMAGE_SIZE else [Resize(image_size)]
    normalize = Normalize(CIFAR10_MEAN, CIFAR10_STD)
    augmentation: list[Transform] = (
        [RandomCrop(IMAGE_SIZE, padding=4), RandomHorizontalFlip()] if augment else []
    )
    return Compose([*augmentation, *resize, normalize]), Compose([*resize, normalize])


def load_cifar10(cfg: DataConfig) -> DatasetSplits:
    """CIFAR-10 from a local ``cifar-10-batches-py`` folder.

    Validation is a stratified ``cfg.val_fraction`` of the 50,000 training images (seed
    ``cfg.split_seed``) and is evaluated without augmentation; the test split is ``test_batch``.

    Args:
        cfg: ``root`` is the ``cifar-10-batches-py`` folder or its parent; ``image_size``
            defaults to 32; ``augment`` turns on crop + flip for training.

    Returns:
        Splits whose ``x`` has shape ``(3, image_size, image_size)``.

    Raises:
        ValueError: if ``root`` is not given, a file is missing or a file is malformed (including
            a pickle that refers to anything but numpy arrays).
        FileNotFoundError: if ``root`` does not exist.
    """
    size = IMAGE_SIZE if cfg.image_size is None else cfg.image_size
    if size < 1:
        raise ValueError(f"image_size must be positive, got {size}")
    folder = _resolve_root(cfg)
    meta = _unpickle(folder / META_FILE)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise ValueError(f"{folder / META_FILE}: b'label_names' must list {NUM_CLASSES} names")

    parts = [_load_batch(folder / name) for name in TRAIN_FILES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _load_batch(folder / TEST_FILE)

    train_tf, eval_tf = cifar10_transforms(size, cfg.augment)
    train_idx, val_idx = split_indices(train_labels, cfg.val_fraction, cfg.split_seed)

    def subset(idx: np.ndarray[Any, Any], transform: Transform) -> TensorImageDataset:
        return TensorImageDataset(
            torch.from_numpy(train_images[idx]), torch.from_numpy(train_labels[idx]), transform
        )

    return DatasetSplits(
        name=cfg.name,
        train=subset(train_idx, train_tf),
        val=subset(val_idx, eval_tf) if cfg.val_fraction > 0 else None,
        test=TensorImageDataset(
            torch.from_numpy(test_images.copy()),  # unpickled buffers may be read-only
            torch.from_numpy(test_labels),
            eval_tf,
        ),
        num_classes=NUM_CLASSES,
        input_shape=(3, size, size),
    )


register_dataset(
    "cifar10",
    load_cifar10,
    description="CIFAR-10: 60000 32x32 colour images, 10 classes (root: cifar-10-batches-py)",
)
