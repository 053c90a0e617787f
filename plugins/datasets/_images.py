"""Image decoding, resizing, normalising and augmentation with Pillow and plain torch.

Shared by the ``image_folder`` and ``hf_disk`` datasets. Pillow decodes a file (or
takes a decoded ``PIL.Image``), converts it to grayscale or RGB; torch resizes it
(bilinear, antialiased), scales it to [0, 1] and normalises it per channel. The random
augmentation (horizontal flip, random crop after zero padding) works on batches of
tensors, so the in-memory and streaming paths apply exactly the same operation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from kdforge.data import LazyInputs
from kdforge.errors import DataError
from kdforge.interfaces import PluginParams

# Pillow is imported when an image is read: it is needed only by image datasets.

__all__ = [
    "IMAGE_EXTENSIONS",
    "AugmentParams",
    "ImageFileInputs",
    "ImageParams",
    "ImageTransform",
    "RandomFlipCrop",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class AugmentParams(PluginParams):
    """Random augmentation of training images (off by default)."""

    enabled: bool = Field(False, description="Augment training batches at random.")
    hflip: bool = Field(True, description="Flip horizontally with probability 0.5.")
    crop_padding: int = Field(
        4, ge=0, description="Zero-pad by this many pixels, then crop back at a random offset."
    )


class ImageParams(PluginParams):
    """How images become tensors."""

    image_size: int | tuple[int, int] = Field(
        32, description="Resize to this size: one int (square) or [height, width]."
    )
    channels: Literal[1, 3] = Field(3, description="1 converts to grayscale, 3 to RGB.")
    mean: list[float] | None = Field(
        None, description="Per-channel mean subtracted after scaling to [0, 1] (default: none)."
    )
    std: list[float] | None = Field(
        None, description="Per-channel std divided by after subtracting the mean."
    )
    augment: AugmentParams = Field(
        default_factory=lambda: AugmentParams.model_validate({}),
        description="Random flip/crop of training batches: {enabled, hflip, crop_padding}.",
    )

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        sizes = (value,) if isinstance(value, int) else value
        if any(s < 1 for s in sizes):
            raise ValueError(f"image_size must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _check_stats(self) -> ImageParams:
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) not in (1, self.channels):
                raise ValueError(f"{key} needs 1 or {self.channels} values, got {len(values)}")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ValueError("std values must be positive")
        return self

    def transform(self) -> ImageTransform:
        """The decode/resize/normalise transform these parameters describe."""
        size = (
            (self.image_size, self.image_size)
            if isinstance(self.image_size, int)
            else self.image_size
        )
        return ImageTransform(
            size=(int(size[0]), int(size[1])),
            channels=self.channels,
            mean=tuple(self.mean) if self.mean else None,
            std=tuple(self.std) if self.std else None,
        )

    def augmentation(self) -> RandomFlipCrop | None:
        """The training augmentation, or None when it is off."""
        a = self.augment
        if not a.enabled or (not a.hflip and a.crop_padding == 0):
            return None
        return RandomFlipCrop(hflip=a.hflip, padding=a.crop_padding)


@dataclass(frozen=True)
class ImageTransform:
    """Decoded image -> float tensor ``(channels, height, width)``."""

    size: tuple[int, int]
    channels: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __call__(self, image: Any) -> torch.Tensor:
        """Convert one ``PIL.Image`` (any mode) to a normalised tensor."""
        converted = image.convert("L" if self.channels == 1 else "RGB")
        array = np.asarray(converted, dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
        if tuple(tensor.shape[1:]) != self.size:
            tensor = F.interpolate(
                tensor[None], size=self.size, mode="bilinear", antialias=True, align_corners=False
            )[0].clamp_(0.0, 1.0)
        if self.mean is not None:
            tensor = tensor - torch.tensor(self.mean).view(-1, 1, 1)
        if self.std is not None:
            tensor = tensor / torch.tensor(self.std).view(-1, 1, 1)
        return tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one transformed image."""
        return (self.channels, *self.size)


@dataclass(frozen=True)
class RandomFlipCrop:
    """Random horizontal flip and random crop after zero padding, on a batch.

    Uses torch's global RNG: seeded per trial in-process, and per DataLoader worker
    from the trainer's seed when streaming.
    """

    hflip: bool = True
    padding: int = 4

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Augment ``batch`` of shape ``(n, channels, height, width)``."""
        out = batch.clone()
        n, _, height, width = out.shape
        if self.hflip and n:
            flip = torch.rand(n) < 0.5
            out[flip] = out[flip].flip(-1)
        if self.padding > 0 and n:
            p = self.padding
            padded = F.pad(out, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,))
            dx = torch.randint(0, 2 * p + 1, (n,))
            for i in range(n):
                top, left = int(dy[i]), int(dx[i])
                out[i] = padded[i, :, top : top + height, left : left + width]
        return out


class ImageFileInputs(LazyInputs):
    """Image files decoded on demand (the streaming path of ``image_folder``)."""

    def __init__(
        self,
        paths: Sequence[str],
        transform: ImageTransform,
        augmentation: RandomFlipCrop | None = None,
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.augmentation = augmentation

    @property
    def example_shape(self) -> tuple[int, ...]:
        """``(channels, height, width)``."""
        return self.transform.shape

    @property
    def dtype(self) -> torch.dtype:
        """Always float32."""
        return torch.float32

    def __len__(self) -> int:
        return len(self.paths)

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Decode and transform the images ``indices``."""
        out = torch.empty((len(indices), *self.example_shape), dtype=torch.float32)
        for slot, index in enumerate(indices):
            out[slot] = decode_file(self.paths[index], self.transform)
        return out

    def fingerprint(self) -> str:
        """Hash of every file's path, size and modification time, and the transform."""
        digest = hashlib.sha256(repr(self.transform).encode())
        for path in self.paths:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def decode_file(path: str, transform: ImageTransform) -> torch.Tensor:
    """Open one image file with Pillow and transform it.

    Raises:
        DataError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return transform(image)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read image {path}: {exc}",
            hint="remove or replace the file; image_folder reads " + ", ".join(IMAGE_EXTENSIONS),
        ) from None
