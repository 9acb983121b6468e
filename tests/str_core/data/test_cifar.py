"""Tests of the CIFAR-10 loader on small files written in the real format."""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections.abc import Sized
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from str_core.config import DataConfig
from str_core.data import load_dataset
from str_core.data._registry import DatasetSplits
from str_core.data.cifar import RestrictedUnpickler
from str_core.data.transforms import CIFAR10_MEAN, CIFAR10_STD

PER_BATCH = 20
N_TRAIN = 5 * PER_BATCH
MEAN = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
STD = torch.tensor(CIFAR10_STD).view(3, 1, 1)


def _len(ds: object) -> int:
    assert isinstance(ds, Sized)
    return len(ds)


def _batch(first_id: int, n: int, rng: np.random.Generator) -> dict[bytes, Any]:
    """``n`` random images whose first red pixel is a unique id; labels cycle through 0..9."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(first_id, first_id + n)
    return {
        b"batch_label": b"batch",
        b"labels": [(first_id + i) % 10 for i in range(n)],
        b"data": data,
        b"filenames": [b"img%d.png" % (first_id + i) for i in range(n)],
    }


def _dump(obj: Any, path: Path) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """``tmp_path/cifar-10-batches-py`` with 5 train batches of 20 images and a test batch of 20."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        _dump(_batch(i * PER_BATCH, PER_BATCH, rng), folder / f"data_batch_{i + 1}")
    _dump(_batch(N_TRAIN, PER_BATCH, rng), folder / "test_batch")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump({b"label_names": names, b"num_cases_per_batch": PER_BATCH}, folder / "batches.meta")
    return folder


def _load(root: Path, **kwargs: Any) -> DatasetSplits:
    return load_dataset(DataConfig(name="cifar10", root=str(root), **kwargs))


def _ids(split: Any) -> list[int]:
    """Recover each image's id from its first red pixel (only without augmentation)."""
    out = []
    for i in range(_len(split)):
        x, _ = split[i]
        out.append(round(float(x[0, 0, 0] * STD[0, 0, 0] + MEAN[0, 0, 0]) * 255))
    return out


def test_shapes_sizes_and_labels(cifar_root: Path) -> None:
    splits = _load(cifar_root.parent, val_fraction=0.2, augment=False)
    assert splits.num_classes == 10
    assert splits.input_shape == (3, 32, 32)
    assert splits.val is not None
    assert (_len(splits.train), _len(splits.val), _len(splits.test)) == (80, 20, 20)
    x, y = splits.train[0]
    assert x.shape == (3, 32, 32)
    assert x.dtype == torch.float32
    assert isinstance(y, int)
    labels = [splits.val[i][1] for i in range(_len(splits.val))]
    assert sorted(labels) == sorted(list(range(10)) * 2)  # stratified: 2 per class


def test_root_may_be_the_folder_itself(cifar_root: Path) -> None:
    splits = _load(cifar_root, val_fraction=0.0)
    assert splits.val is None
    assert _len(splits.train) == N_TRAIN


def test_pixels_are_channel_major_and_normalised(cifar_root: Path) -> None:
    rng = np.random.default_rng(1)
    batch = _batch(0, PER_BATCH, rng)
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    image[0], image[1], image[2, :, :16] = 255, 0, 128  # red plane, green plane, left of blue
    batch[b"data"][0] = image.reshape(-1)
    _dump(batch, cifar_root / "data_batch_1")

    splits = _load(cifar_root, val_fraction=0.0, augment=False)
    x, label = splits.train[0]
    expected = (torch.from_numpy(image).float() / 255 - MEAN) / STD
    torch.testing.assert_close(x, expected)
    assert label == 0


def test_splits_are_disjoint_and_cover_the_data(cifar_root: Path) -> None:
    splits = _load(cifar_root, val_fraction=0.3, augment=False)
    assert splits.val is not None
    train, val, test = _ids(splits.train), _ids(splits.val), _ids(splits.test)
    assert sorted(train + val) == list(range(N_TRAIN))
    assert sorted(test) == list(range(N_TRAIN, N_TRAIN + PER_BATCH))
    for i in range(_len(splits.val)):
        assert splits.val[i][1] == val[i] % 10  # labels follow their images


def test_split_seed_controls_validation(cifar_root: Path) -> None:
    def val_ids(seed: int) -> list[int]:
        return _ids(_load(cifar_root, val_fraction=0.2, split_seed=seed, augment=False).val)

    assert val_ids(0) == val_ids(0)
    assert val_ids(0) != val_ids(1)


def test_augmentation_is_random_but_seeded(cifar_root: Path) -> None:
    splits = _load(cifar_root, val_fraction=0.2, augment=True)
    assert splits.val is not None

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return torch.stack([splits.train[i][0] for i in range(8)])

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    # Validation and test use no augmentation.
    assert torch.equal(splits.val[3][0], splits.val[3][0])
    assert torch.equal(splits.test[3][0], splits.test[3][0])


def test_augmentation_pads_with_zeros(cifar_root: Path) -> None:
    batch = _batch(0, PER_BATCH, np.random.default_rng(2))
    batch[b"data"][:] = 255  # all-white images: any black pixel is padding
    _dump(batch, cifar_root / "data_batch_1")
    splits = _load(cifar_root, val_fraction=0.0, augment=True)
    padding = -MEAN / STD  # a zero pixel after normalisation
    white = (1 - MEAN) / STD
    torch.manual_seed(0)
    padded = 0
    for _ in range(20):
        x, _ = splits.train[0]
        is_pad = torch.isclose(x, padding.expand_as(x))
        assert torch.all(is_pad | torch.isclose(x, white.expand_as(x)))
        padded += int(is_pad.any())
    assert padded > 10  # P(no padding visible) = 1/81 per draw


def test_datasets_pickle_for_dataloader_workers(cifar_root: Path) -> None:
    splits = _load(cifar_root, augment=True)
    clone = pickle.loads(pickle.dumps(splits.train))
    torch.manual_seed(0)
    a = clone[3][0]
    torch.manual_seed(0)
    assert torch.equal(a, splits.train[3][0])


def test_image_size_resizes(cifar_root: Path) -> None:
    splits = _load(cifar_root, image_size=16, augment=True)
    assert splits.input_shape == (3, 16, 16)
    assert splits.val is not None
    for split in (splits.train, splits.val, splits.test):
        assert split[0][0].shape == (3, 16, 16)


# The pure-Python pickler (absent from typeshed) lets a subclass change how types are written.
_PurePickler: Any = pickle._Pickler


class _Py2Pickler(_PurePickler):  # type: ignore[misc]
    """Writes a pickle as Python 2 did for the official files: byte strings, numpy.core names."""

    dispatch: ClassVar[dict[type, Any]] = dict(_PurePickler.dispatch)

    def save_py2_string(self, obj: bytes | str) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def test_reads_python2_pickles_like_the_official_files(cifar_root: Path) -> None:
    batch = _batch(0, PER_BATCH, np.random.default_rng(3))
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(batch)
    assert b"numpy.core.multiarray" in buf.getvalue()
    assert b"_codecs" not in buf.getvalue()
    (cifar_root / "data_batch_1").write_bytes(buf.getvalue())

    splits = _load(cifar_root, val_fraction=0.0, augment=False)
    assert _ids(splits.train)[:PER_BATCH] == list(range(PER_BATCH))
    x, _ = splits.train[5]
    expected = torch.from_numpy(batch[b"data"][5].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(x, (expected - MEAN) / STD)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(cifar_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _dump({b"data": _Exploit(marker), b"labels": []}, cifar_root / "data_batch_3")
    with pytest.raises(ValueError, match=r"refusing to load global (posix|os|nt)\.system"):
        _load(cifar_root)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval, protocol=2),
        pickle.dumps(np.int64(3), protocol=2),  # numpy scalars are not needed either
        pickle.dumps(np.load, protocol=2),
    ],
)
def test_restricted_unpickler_allows_only_array_reconstruction(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    data = {b"x": np.arange(6, dtype=np.uint8).reshape(2, 3), b"y": [1, 2]}
    loaded = RestrictedUnpickler(io.BytesIO(pickle.dumps(data, protocol=2))).load()
    np.testing.assert_array_equal(loaded[b"x"], data[b"x"])


def test_root_is_required() -> None:
    with pytest.raises(ValueError, match="`root` is required"):
        load_dataset(DataConfig(name="cifar10"))


def test_missing_root_names_path_and_layout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere.*cifar-10-batches-py.*data_batch_1"):
        _load(missing)


def test_missing_batch_file(cifar_root: Path) -> None:
    (cifar_root / "test_batch").unlink()
    with pytest.raises(ValueError, match="missing test_batch"):
        _load(cifar_root)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({b"data": np.zeros((PER_BATCH, 100), dtype=np.uint8)}, "3072"),
        ({b"data": np.zeros((PER_BATCH, 3072), dtype=np.float32)}, "uint8"),
        ({b"labels": [0] * (PER_BATCH - 1)}, "labels"),
        ({b"labels": [10] * PER_BATCH}, r"\[0, 10\)"),
    ],
)
def test_malformed_batch(cifar_root: Path, change: dict[bytes, Any], message: str) -> None:
    batch = _batch(0, PER_BATCH, np.random.default_rng(4))
    batch.update(change)
    _dump(batch, cifar_root / "data_batch_2")
    with pytest.raises(ValueError, match=message):
        _load(cifar_root)


def test_missing_key(cifar_root: Path) -> None:
    _dump({b"labels": [0]}, cifar_root / "data_batch_2")
    with pytest.raises(ValueError, match="missing key"):
        _load(cifar_root)


def test_truncated_file(cifar_root: Path) -> None:
    (cifar_root / "data_batch_2").write_bytes(b"\x80\x02}q\x00(")
    with pytest.raises(ValueError, match="not a readable CIFAR-10 batch"):
        _load(cifar_root)


def test_bad_meta(cifar_root: Path) -> None:
    _dump({b"label_names": [b"a", b"b"]}, cifar_root / "batches.meta")
    with pytest.raises(ValueError, match="label_names"):
        _load(cifar_root)
