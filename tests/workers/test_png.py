"""The PNG writer: files that Pillow reads back pixel for pixel, with valid chunk checksums."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers.png import encode_png, write_png


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.verify()  # chunk CRCs and structure
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


@pytest.mark.parametrize("channels", [3, 4])
def test_noise_round_trips_exactly(channels: int) -> None:
    # random bytes make the Up filter wrap around 256 in both directions
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, channels), dtype=np.uint8)
    assert np.array_equal(_decoded(encode_png(pixels)), pixels)


def test_a_strided_view_is_encoded_as_its_values() -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    rgb = rgba[..., :3]  # not contiguous: every fourth byte skipped
    decoded = _decoded(encode_png(rgb))
    assert decoded.shape == (20, 30, 3)
    assert np.array_equal(decoded, rgb)


def test_flat_images_compress_and_keep_their_mode(tmp_path: Path) -> None:
    white = np.full((400, 600, 3), 255, dtype=np.uint8)
    white[100:300, 200:220] = (31, 119, 180)  # a bar
    path = write_png(tmp_path / "flat.png", white)
    assert path == tmp_path / "flat.png"
    assert path.stat().st_size < white.nbytes / 100
    with Image.open(path) as image:
        assert (image.mode, image.size) == ("RGB", (600, 400))
        assert np.array_equal(np.asarray(image), white)


def test_one_pixel() -> None:
    pixel = np.array([[[1, 2, 3, 4]]], dtype=np.uint8)
    assert np.array_equal(_decoded(encode_png(pixel)), pixel)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
        (np.zeros((4, 4), dtype=np.uint8), r"\(4, 4\)"),
        (np.zeros((4, 4, 2), dtype=np.uint8), r"\(4, 4, 2\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "at least one pixel"),
    ],
)
def test_other_images_are_refused(pixels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_png(pixels)
