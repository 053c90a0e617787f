"""Dataset ``image_folder``: a folder with one sub-folder of images per class.

The layout of torchvision's ``ImageFolder``::

    root/cat/001.png            root/train/cat/001.png
    root/cat/002.jpg     or     root/train/dog/...
    root/dog/...                root/val/cat/...   (val, test optional)
                                root/transfer/...  (unlabeled images, any layout)

Class names are the sorted sub-folder names. Without split folders the images are
split seeded and stratified; ``transfer_dir`` adds a folder of unlabeled images.
Images are decoded with Pillow, converted to grayscale or RGB, resized, scaled to
[0, 1] and normalised with torch; training batches can be randomly flipped and
cropped. Small folders are decoded once and held in memory; large ones are decoded
on the fly by DataLoader workers (see ``storage``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

import kdforge
from kdforge.batching import apply_storage
from kdforge.data import UNLABELED, DataInfo, DataSplits
from kdforge.errors import DataError
from kdforge.interfaces import DatasetPlugin
from kdforge.plugins.datasets._images import IMAGE_EXTENSIONS, ImageFileInputs, ImageParams
from kdforge.plugins.datasets._splits import (
    FileDatasetParams,
    assign_splits,
    make_splits,
    normalize_split_name,
)

_SPLIT_DIRS = {
    "train",
    "training",
    "val",
    "valid",
    "validation",
    "dev",
    "test",
    "testing",
    "transfer",
    "unlabeled",
    "unlabelled",
    "unsupervised",
}


class ImageFolderParams(FileDatasetParams, ImageParams):
    """Parameters of the ``image_folder`` dataset."""

    root: str = Field(description="Folder with one sub-folder per class (or train/val/test).")
    transfer_dir: str | None = Field(
        None, description="Optional folder of unlabeled images (searched recursively)."
    )
    extensions: list[str] = Field(
        default_factory=lambda: list(IMAGE_EXTENSIONS),
        description="File suffixes read as images (case-insensitive).",
    )


class ImageFolder(DatasetPlugin):
    """Images in class sub-folders (torchvision ImageFolder layout), read with Pillow."""

    name = "image_folder"
    Params = ImageFolderParams

    def load(self, seed: int) -> DataSplits:
        """Find the images, split them, and hold them in memory or stream them."""
        params = self.params
        assert isinstance(params, ImageFolderParams)
        root = Path(params.root).expanduser()
        where = f"dataset 'image_folder' (root={root})"
        if not root.is_dir():
            raise DataError(f"{where}: folder not found", hint="set dataset.params.root")
        suffixes = {s.lower() if s.startswith(".") else f".{s.lower()}" for s in params.extensions}
        records = _scan(root, suffixes, where)
        if params.transfer_dir is not None:
            extra = Path(params.transfer_dir).expanduser()
            if not extra.is_dir():
                raise DataError(f"{where}: transfer_dir {extra} is not a folder")
            records += [(p, None, "transfer") for p in _images_under(extra, suffixes)]
        classes = sorted({c for _, c, _ in records if c is not None})
        if not classes:
            raise DataError(
                f"{where}: no images in class sub-folders",
                hint=f"put images in {root}/<class name>/ (suffixes {', '.join(sorted(suffixes))})",
            )
        index = {name: i for i, name in enumerate(classes)}
        paths = [str(p) for p, _, _ in records]
        labels = np.array([UNLABELED if c is None else index[c] for _, c, _ in records])
        given = [g for _, _, g in records]
        rows = assign_splits(labels, given if any(given) else None, params, seed, where)
        transform = params.transform()
        augmentation = params.augmentation()

        def inputs_for(split: str, picked: np.ndarray) -> ImageFileInputs:
            train_like = split in ("train", "transfer")
            return ImageFileInputs(
                [paths[i] for i in picked], transform, augmentation if train_like else None
            )

        info = DataInfo(
            name=root.name or "images",
            input_shape=transform.shape,
            num_classes=len(classes),
            class_names=tuple(classes),
        )
        splits = make_splits(info, rows, labels, inputs_for)
        return apply_storage(
            splits,
            storage=params.storage,
            memory_limit_mb=params.memory_limit_mb,
            num_workers=params.num_workers,
        )


def _images_under(folder: Path, suffixes: set[str]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _scan(root: Path, suffixes: set[str], where: str) -> list[tuple[Path, str | None, str]]:
    """``(path, class or None, given split or "")`` of every image, in a fixed order."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = {d.name.lower() for d in subdirs}
    split_layout = "train" in names and names <= _SPLIT_DIRS
    records: list[tuple[Path, str | None, str]] = []
    if not split_layout:
        for folder in subdirs:
            images = _images_under(folder, suffixes)
            if not images:
                raise DataError(
                    f"{where}: class folder {folder.name!r} holds no images",
                    hint=f"remove it or add images with suffixes {', '.join(sorted(suffixes))}",
                )
            records += [(p, folder.name, "") for p in images]
        return records
    for split_dir in subdirs:
        split = normalize_split_name(split_dir.name, where)
        if split == "transfer":
            records += [(p, None, "transfer") for p in _images_under(split_dir, suffixes)]
            continue
        for folder in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            records += [(p, folder.name, split) for p in _images_under(folder, suffixes)]
    return records


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``image_folder`` dataset."""
    register("image_folder", ImageFolder)
