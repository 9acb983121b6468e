"""Image transforms written with torch ops: small callables chained with :class:`Compose`.

:func:`to_tensor` turns a decoded image (a PIL image, an ``H x W x C`` uint8 array, or a
``C x H x W`` uint8 tensor) into a ``C x H x W`` float tensor in ``[0, 1]``; every other transform
maps such a tensor to another one. Random transforms draw from the global ``torch`` RNG
(``torch.randint`` / ``torch.rand``), so seeding torch (and ``DataLoader`` worker seeding, which
derives from it) makes augmentation reproducible. All classes are picklable, so datasets that hold
them work with ``DataLoader(num_workers > 0)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CenterCrop",
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "ToTensor",
    "resize_shorter_side",
    "to_tensor",
]

# Per-channel statistics of the training images, RGB, pixel values scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Transform = Callable[[Tensor], Tensor]


def to_tensor(pic: Any) -> Tensor:
    """Convert an image to a float32 ``(C, H, W)`` tensor with values in ``[0, 1]``.

    Args:
        pic: a PIL image (any mode numpy can view as uint8; convert to ``"RGB"`` first for
            colour), an ``(H, W)`` or ``(H, W, C)`` uint8 array, or a ``(C, H, W)`` tensor
            (uint8 is scaled by 1/255, floating point is returned as float32 unchanged).

    Returns:
        The image as a ``(C, H, W)`` float32 tensor.

    Raises:
        ValueError: for an array or tensor of unsupported dtype or rank.
    """
    if isinstance(pic, Tensor):
        if pic.ndim != 3:
            raise ValueError(f"expected a (C, H, W) tensor, got shape {tuple(pic.shape)}")
        if pic.dtype == torch.uint8:
            return pic.float().div_(255)
        if pic.is_floating_point():
            return pic.float()
        raise ValueError(f"unsupported tensor dtype {pic.dtype}")
    arr = np.asarray(pic)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {arr.shape}")
    # (H, W, C) -> (C, H, W); copy so the tensor owns writable memory.
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class ToTensor:
    """:func:`to_tensor` as a transform object."""

    def __call__(self, pic: Any) -> Tensor:
        return to_tensor(pic)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """Subtract a per-channel mean and divide by a per-channel standard deviation."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError("mean and std must have the same length")
        if any(s <= 0 for s in std):
            raise ValueError("std must be positive")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)  # (C, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)  # (C, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std  # (C, H, W)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def _resize(x: Tensor, height: int, width: int) -> Tensor:
    """Bilinear, anti-aliased resize of a ``(C, H, W)`` float tensor to ``(C, height, width)``."""
    if x.shape[-2:] == (height, width):
        return x
    out = F.interpolate(
        x.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return out.squeeze(0)


def resize_shorter_side(height: int, width: int, size: int) -> tuple[int, int]:
    """Output ``(height, width)`` whose shorter side is ``size``, keeping the aspect ratio."""
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


class Resize:
    """Resize so the shorter side equals ``size`` (bilinear with anti-aliasing)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: Tensor) -> Tensor:
        h, w = resize_shorter_side(x.shape[-2], x.shape[-1], self.size)
        return _resize(x, h, w)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """Crop the central ``size x size`` square (zero-padding an image smaller than that)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = max(0, self.size - h), max(0, self.size - w)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            h, w = x.shape[-2:]
        top = (h - self.size) // 2
        left = (w - self.size) // 2
        return x[..., top : top + self.size, left : left + self.size]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class RandomCrop:
    """Zero-pad every side by ``padding`` pixels, then crop a random ``size x size`` window."""

    def __init__(self, size: int, padding: int = 0) -> None:
        self.size = size
        self.padding = padding

    def __call__(self, x: Tensor) -> Tensor:
        if self.padding:
            p = self.padding
            x = F.pad(x, (p, p, p, p))  # (C, H + 2p, W + 2p), zeros
        h, w = x.shape[-2:]
        if h < self.size or w < self.size:
            raise ValueError(f"cannot crop {self.size}x{self.size} from a {h}x{w} image")
        top = int(torch.randint(0, h - self.size + 1, ()).item())
        left = int(torch.randint(0, w - self.size + 1, ()).item())
        return x[..., top : top + self.size, left : left + self.size]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: Tensor) -> Tensor:
        if float(torch.rand(())) < self.p:
            return x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomResizedCrop:
    """Crop a random area and aspect ratio, then resize it to ``size x size``.

    The crop covers a share of the image area drawn uniformly from ``scale`` and has an aspect
    ratio (width / height) drawn log-uniformly from ``ratio`` (the Inception-style augmentation
    used for ImageNet training). After 10 draws that do not fit in the image it falls back to the
    largest central crop whose aspect ratio lies within ``ratio``.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.size = size
        self.scale = scale
        self.ratio = ratio

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Draw ``(top, left, crop_height, crop_width)`` for an image of the given size."""
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            u = torch.rand(2).tolist()
            target = area * (self.scale[0] + u[0] * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_lo + u[1] * (log_hi - log_lo))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()).item())
                left = int(torch.randint(0, width - w + 1, ()).item())
                return top, left, h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, x: Tensor) -> Tensor:
        top, left, h, w = self.crop_box(x.shape[-2], x.shape[-1])
        return _resize(x[..., top : top + h, left : left + w], self.size, self.size)

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"
