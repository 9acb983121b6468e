"""Tests of the ImageNet-style image-folder loader on tiny JPEG and PNG files."""

from __future__ import annotations

import pickle
from collections.abc import Sized
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from str_core.config import DataConfig
from str_core.data import imagefolder, load_dataset
from str_core.data._registry import DatasetSplits
from str_core.data.imagefolder import ImageFileDataset
from str_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CLASSES = ("cat", "dog", "eel")
COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "eel": (0, 0, 255)}
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _len(ds: object) -> int:
    assert isinstance(ds, Sized)
    return len(ds)


def _save(path: Path, colour: tuple[int, int, int], mode: str = "RGB") -> None:
    img = Image.new("RGB", (40, 30), colour)  # width 40, height 30
    img.convert(mode).save(path)


def _make_split(folder: Path, per_class: int) -> None:
    suffixes = [".jpg", ".png", ".JPEG", ".png"]
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            _save(folder / name / f"{i}{suffixes[i % 4]}", COLOURS[name])
        (folder / name / "notes.txt").write_text("not an image")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """3 classes, each a solid colour: 4 train and 2 val images of 40x30 pixels."""
    _make_split(tmp_path / "train", per_class=4)
    _make_split(tmp_path / "val", per_class=2)
    return tmp_path


def _load(root: Path, **kwargs: Any) -> DatasetSplits:
    kwargs.setdefault("image_size", 32)
    return load_dataset(DataConfig(name="imagefolder", root=str(root), **kwargs))


def _paths(split: Any) -> list[str]:
    assert isinstance(split, ImageFileDataset)
    return [p for p, _ in split.samples]


def test_shapes_sizes_and_labels(root: Path) -> None:
    splits = _load(root, val_fraction=0.25, augment=False)
    assert splits.num_classes == 3
    assert splits.input_shape == (3, 32, 32)
    assert splits.val is not None
    assert (_len(splits.train), _len(splits.val), _len(splits.test)) == (9, 3, 6)
    for split in (splits.train, splits.val, splits.test):
        for i in range(_len(split)):
            x, y = split[i]
            assert x.shape == (3, 32, 32)
            assert x.dtype == torch.float32
            assert isinstance(y, int)
            assert 0 <= y < 3


def test_labels_follow_sorted_class_folders_and_pixels_are_rgb(root: Path) -> None:
    splits = _load(root, val_fraction=0.0, augment=False)
    for split in (splits.train, splits.test):
        for i in range(_len(split)):
            x, y = split[i]
            rgb = (x * STD + MEAN).mean(dim=(1, 2))  # undo normalisation
            expected = torch.tensor(COLOURS[CLASSES[y]], dtype=torch.float32) / 255
            torch.testing.assert_close(rgb, expected, atol=0.02, rtol=0)


def test_grey_and_rgba_files_become_rgb(root: Path) -> None:
    _save(root / "train" / "cat" / "grey.png", (200, 200, 200), mode="L")
    _save(root / "train" / "cat" / "alpha.png", (255, 0, 0), mode="RGBA")
    splits = _load(root, val_fraction=0.0, augment=False)
    paths = _paths(splits.train)
    for name in ("grey.png", "alpha.png"):
        x, y = splits.train[next(i for i, p in enumerate(paths) if p.endswith(name))]
        assert x.shape == (3, 32, 32)
        assert y == 0


def test_validation_is_carved_from_train_without_overlap(root: Path) -> None:
    splits = _load(root, val_fraction=0.25)
    train, val, test = _paths(splits.train), _paths(splits.val), _paths(splits.test)
    all_train = sorted(str(p) for p in (root / "train").rglob("*") if p.suffix != ".txt")
    assert sorted(train + val) == [p for p in all_train if Path(p).is_file()]
    assert not set(train) & set(val)
    assert all("/val/" in p for p in test)
    assert sorted(Path(p).parent.name for p in val) == list(CLASSES)  # stratified


def test_split_seed_controls_validation(root: Path) -> None:
    def val_paths(seed: int) -> list[str]:
        return _paths(_load(root, val_fraction=0.25, split_seed=seed).val)

    assert val_paths(0) == val_paths(0)
    assert any(val_paths(seed) != val_paths(0) for seed in range(1, 6))


def test_images_are_decoded_lazily(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_decode = imagefolder._decode

    def counting_decode(path: str) -> torch.Tensor:
        calls.append(path)
        return real_decode(path)

    monkeypatch.setattr(imagefolder, "_decode", counting_decode)
    splits = _load(root)
    assert calls == []
    splits.test[1]
    assert calls == [_paths(splits.test)[1]]


def test_augmentation_is_random_but_seeded(root: Path) -> None:
    # Make images that are not solid, so crops and flips show.
    for i, path in enumerate(sorted((root / "train").rglob("*.png"))):
        arr = np.random.default_rng(i).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
        Image.fromarray(arr).save(path)
    splits = _load(root, val_fraction=0.25, augment=True)
    pngs = [i for i, p in enumerate(_paths(splits.train)) if p.endswith(".png")]

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return torch.stack([splits.train[i][0] for i in pngs])

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    assert splits.val is not None
    assert torch.equal(splits.val[0][0], splits.val[0][0])


def test_datasets_pickle_for_dataloader_workers(root: Path) -> None:
    splits = _load(root, augment=True)
    clone = pickle.loads(pickle.dumps(splits.train))
    torch.manual_seed(0)
    a = clone[2][0]
    torch.manual_seed(0)
    assert torch.equal(a, splits.train[2][0])


def test_default_image_size_is_224(root: Path) -> None:
    splits = _load(root, image_size=None, augment=False, val_fraction=0.0)
    assert splits.input_shape == (3, 224, 224)
    assert splits.train[0][0].shape == (3, 224, 224)


def test_root_is_required() -> None:
    with pytest.raises(ValueError, match="`root` is required"):
        load_dataset(DataConfig(name="imagefolder"))


def test_missing_root_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.*root/train/<class>"):
        _load(tmp_path / "nowhere")


def test_missing_val_folder(root: Path) -> None:
    for path in sorted((root / "val").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "val").rmdir()
    with pytest.raises(FileNotFoundError, match="val"):
        _load(root)


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        _load(tmp_path)


def test_val_classes_must_match(root: Path) -> None:
    (root / "val" / "fox").mkdir()
    _save(root / "val" / "fox" / "0.jpg", (9, 9, 9))
    with pytest.raises(ValueError, match=r"extra in val: \['fox'\]"):
        _load(root)


def test_empty_class_folder(root: Path) -> None:
    for path in (root / "train" / "dog").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match="dog: class folder holds no images"):
        _load(root)


def test_undecodable_file_fails_on_access(root: Path) -> None:
    (root / "val" / "eel" / "9.jpg").write_bytes(b"not a jpeg")
    splits = _load(root)
    bad = _paths(splits.test).index(str(root / "val" / "eel" / "9.jpg"))
    with pytest.raises(ValueError, match="cannot decode image"):
        splits.test[bad]
