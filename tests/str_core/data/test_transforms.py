"""Tests of the hand-written image transforms."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from str_core.data.transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
    resize_shorter_side,
    to_tensor,
)


def _ramp(c: int = 3, h: int = 6, w: int = 8) -> torch.Tensor:
    return torch.arange(c * h * w, dtype=torch.float32).view(c, h, w)


def test_to_tensor_from_pil_rgb() -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    x = to_tensor(Image.fromarray(arr))
    assert x.shape == (3, 5, 7)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)


def test_to_tensor_from_grey_array_and_uint8_tensor() -> None:
    grey = np.full((4, 3), 51, dtype=np.uint8)
    assert torch.allclose(to_tensor(grey), torch.full((1, 4, 3), 0.2))
    chw = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(to_tensor(chw), torch.ones(3, 2, 2))
    assert torch.equal(ToTensor()(chw), torch.ones(3, 2, 2))


def test_to_tensor_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(np.zeros((2, 2, 3), dtype=np.float64))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        to_tensor(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="dtype"):
        to_tensor(torch.zeros(3, 2, 2, dtype=torch.int32))


def test_normalize_per_channel() -> None:
    x = torch.stack([torch.full((2, 2), v) for v in (0.5, 0.2, 1.0)])
    out = Normalize((0.5, 0.1, 0.0), (1.0, 0.1, 2.0))(x)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="same length"):
        Normalize((0.5,), (1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (0.0,))


def test_resize_keeps_aspect_ratio_and_constant_images() -> None:
    assert resize_shorter_side(30, 40, 36) == (36, 48)
    assert resize_shorter_side(40, 30, 36) == (48, 36)
    x = torch.full((3, 30, 40), 0.25)
    out = Resize(36)(x)
    assert out.shape == (3, 36, 48)
    torch.testing.assert_close(out, torch.full_like(out, 0.25))
    assert Resize(30)(x) is x  # already the right size


def test_center_crop_takes_the_middle() -> None:
    x = _ramp(h=6, w=8)
    torch.testing.assert_close(CenterCrop(4)(x), x[:, 1:5, 2:6])
    small = CenterCrop(4)(torch.ones(1, 2, 2))
    assert small.shape == (1, 4, 4)
    assert small.sum() == 4  # zero-padded around the original


def test_random_crop_is_a_window_of_the_padded_image() -> None:
    x = torch.ones(3, 8, 8)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    crop = RandomCrop(8, padding=2)
    offsets = set()
    torch.manual_seed(0)
    for _ in range(60):
        out = crop(x)
        assert out.shape == (3, 8, 8)
        matches = [
            (t, left)
            for t in range(5)
            for left in range(5)
            if torch.equal(out, padded[:, t : t + 8, left : left + 8])
        ]
        assert matches
        offsets.update(matches)
    assert len(offsets) > 10  # many of the 25 offsets seen
    with pytest.raises(ValueError, match="cannot crop"):
        RandomCrop(9)(x)


def test_random_transforms_follow_the_torch_seed() -> None:
    x = _ramp(h=16, w=16)
    pipeline = Compose([RandomCrop(12, padding=2), RandomHorizontalFlip(), RandomResizedCrop(8)])

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        np.random.seed(seed + 100)  # numpy's RNG must not matter
        return torch.stack([pipeline(x) for _ in range(5)])

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_horizontal_flip() -> None:
    x = _ramp()
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x), x.flip(-1))
    assert RandomHorizontalFlip(p=0.0)(x) is x
    torch.manual_seed(0)
    flipped = [bool(torch.equal(RandomHorizontalFlip()(x), x.flip(-1))) for _ in range(40)]
    assert 5 < sum(flipped) < 35


def test_random_resized_crop_boxes_stay_inside_and_respect_scale() -> None:
    rrc = RandomResizedCrop(8, scale=(0.25, 0.5), ratio=(0.5, 2.0))
    torch.manual_seed(0)
    for _ in range(200):
        top, left, h, w = rrc.crop_box(30, 40)
        assert 0 <= top <= 30 - h
        assert 0 <= left <= 40 - w
        assert 0.2 * 1200 <= h * w <= 0.55 * 1200  # rounding to whole pixels
    assert rrc(torch.rand(3, 30, 40)).shape == (3, 8, 8)


def test_random_resized_crop_full_image_and_fallback() -> None:
    x = torch.rand(3, 16, 16)
    whole = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(whole(x), Resize(8)(x))
    # No draw can give aspect 2 at full area of a square: fall back to a central 2:1 crop.
    wide = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    assert wide.crop_box(16, 16) == (4, 0, 8, 16)


def test_compose_applies_in_order_and_pickles() -> None:
    pipeline = Compose([CenterCrop(4), Normalize((1.0,), (2.0,))])
    x = _ramp(c=1)
    torch.testing.assert_close(pipeline(x), (x[:, 1:5, 2:6] - 1) / 2)
    clone = pickle.loads(pickle.dumps(pipeline))
    torch.testing.assert_close(clone(x), pipeline(x))
    assert "CenterCrop(4)" in repr(pipeline)
