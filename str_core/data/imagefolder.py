"""ImageNet-style image folders: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``.

Classes are the sorted sub-folder names of ``train/``; ``val/`` must have the same ones. Files
are listed up front (recursively inside each class folder) but decoded lazily, one item at a time,
with PIL (imported on first use). ``val/`` is the test split; the validation split is carved from
``train/`` with ``cfg.val_fraction``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from str_core.config import DataConfig
from str_core.data._registry import DatasetSplits, register_dataset
from str_core.data.splits import split_indices
from str_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    Transform,
    to_tensor,
)

__all__ = [
    "IMAGEFOLDER_LAYOUT",
    "IMAGE_EXTENSIONS",
    "ImageFileDataset",
    "find_images",
    "imagefolder_transforms",
    "load_imagefolder",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)
IMAGEFOLDER_LAYOUT = (
    "expected root/train/<class>/<image> and root/val/<class>/<image> with the same class "
    f"folders in both ({', '.join(sorted(IMAGE_EXTENSIONS))} files)"
)
DEFAULT_IMAGE_SIZE = 224

Sample = tuple[str, int]


def _class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir} does not exist; {IMAGEFOLDER_LAYOUT}")
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_images(split_dir: Path, classes: Sequence[str]) -> list[Sample]:
    """List ``(path, label)`` for every image file under ``split_dir/<class>/``, in sorted order.

    Args:
        split_dir: the ``train`` or ``val`` folder.
        classes: class folder names; the label of ``classes[i]`` is ``i``.

    Returns:
        The samples, ordered by class then path.

    Raises:
        ValueError: if a class folder holds no image file.
    """
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if not files:
            raise ValueError(f"{folder}: class folder holds no images; {IMAGEFOLDER_LAYOUT}")
        samples.extend((str(p), label) for p in files)
    return samples


def _decode(path: str) -> Tensor:
    """Decode an image file to a ``(3, H, W)`` float tensor in ``[0, 1]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError) as e:  # unreadable or truncated image data
        raise ValueError(f"cannot decode image {path}: {e}") from e
    return to_tensor(rgb)


class ImageFileDataset(Dataset[tuple[Tensor, int]]):
    """Images read from disk on access; items are ``(transform(image), label)``."""

    def __init__(self, samples: Sequence[Sample], transform: Transform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return self.transform(_decode(path)), label


def imagefolder_transforms(image_size: int, augment: bool) -> tuple[Transform, Transform]:
    """Training and evaluation transforms for ``(3, H, W)`` float images of any size.

    Evaluation resizes the shorter side to ``image_size * 256 / 224`` and takes the central
    ``image_size`` square. Training does the same without ``augment``; with it, a random resized
    crop to ``image_size`` and a random horizontal flip. Both normalise with the ImageNet
    channel statistics.
    """
    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    center: list[Transform] = [Resize(image_size * 256 // 224), CenterCrop(image_size)]
    eval_tf = Compose([*center, normalize])
    if not augment:
        return eval_tf, eval_tf
    train_tf = Compose([RandomResizedCrop(image_size), RandomHorizontalFlip(), normalize])
    return train_tf, eval_tf


def load_imagefolder(cfg: DataConfig) -> DatasetSplits:
    """An image-folder dataset laid out like ImageNet.

    Args:
        cfg: ``root`` holds ``train/`` and ``val/``; ``image_size`` defaults to 224;
            ``augment`` turns on random-resized-crop + flip for training.

    Returns:
        Splits whose ``x`` has shape ``(3, image_size, image_size)``; ``test`` is ``val/``.

    Raises:
        ValueError: if ``root`` is not given, there are no class folders, a class folder is
            empty, or ``val/`` has different classes from ``train/``.
        FileNotFoundError: if ``root``, ``root/train`` or ``root/val`` does not exist.
    """
    if cfg.root is None:
        raise ValueError(f"dataset {cfg.name!r}: `root` is required; {IMAGEFOLDER_LAYOUT}")
    size = DEFAULT_IMAGE_SIZE if cfg.image_size is None else cfg.image_size
    if size < 1:
        raise ValueError(f"image_size must be positive, got {size}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist; {IMAGEFOLDER_LAYOUT}")

    classes = _class_folders(root / "train")
    if not classes:
        raise ValueError(f"{root / 'train'}: no class folders; {IMAGEFOLDER_LAYOUT}")
    val_classes = _class_folders(root / "val")
    if val_classes != classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        raise ValueError(
            f"{root}: val/ classes differ from train/ classes "
            f"(missing in val: {only_train}; extra in val: {only_val})"
        )
    train_samples = find_images(root / "train", classes)
    test_samples = find_images(root / "val", classes)

    labels = np.fromiter((label for _, label in train_samples), dtype=np.int64)
    train_idx, val_idx = split_indices(labels, cfg.val_fraction, cfg.split_seed)
    train_tf, eval_tf = imagefolder_transforms(size, cfg.augment)
    return DatasetSplits(
        name=cfg.name,
        train=ImageFileDataset([train_samples[i] for i in train_idx], train_tf),
        val=(
            ImageFileDataset([train_samples[i] for i in val_idx], eval_tf)
            if cfg.val_fraction > 0
            else None
        ),
        test=ImageFileDataset(test_samples, eval_tf),
        num_classes=len(classes),
        input_shape=(3, size, size),
    )


register_dataset(
    "imagefolder",
    load_imagefolder,
    description="ImageNet-style folders root/{train,val}/<class>/<image> (root required)",
)
