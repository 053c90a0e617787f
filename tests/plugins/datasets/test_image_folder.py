"""Dataset ``image_folder``: layouts, classes, resize/normalise, transfer, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdforge.batching import materialize
from kdforge.errors import DataError
from kdforge.plugins.datasets._images import ImageFileInputs
from kdforge.plugins.datasets.image_folder import ImageFolder
from kdforge.testing import DatasetContract
from tests.plugins.datasets.builders import write_image_folder


def _load(root: Path, seed: int = 0, **params) -> object:
    return ImageFolder(ImageFolder.Params(root=str(root), **params)).load(seed)


class TestImageFolderContract(DatasetContract):
    registered_name = "image_folder"

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> ImageFolder:
        root = write_image_folder(tmp_path / "images", split_layout=True, transfer=4)
        return ImageFolder(ImageFolder.Params(root=str(root), image_size=8, storage="stream"))


def test_class_folders_become_sorted_classes_of_resized_images(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=10)
    splits = _load(root, image_size=[6, 9])
    assert splits.info.class_names == ("circle", "square", "stripes")
    assert splits.info.input_shape == (3, 6, 9) and splits.info.num_classes == 3
    assert sum(len(s) for s in (splits.train, splits.val, splits.test)) == 30
    x = splits.train.x
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    for split in (splits.train, splits.val, splits.test):
        assert torch.bincount(split.y, minlength=3).min() >= 1  # stratified


def test_grayscale_and_normalisation(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=6)
    plain = _load(root, image_size=8, channels=1)
    normalised = _load(root, image_size=8, channels=1, mean=[0.5], std=[0.25])
    assert plain.info.input_shape == (1, 8, 8)
    torch.testing.assert_close(normalised.train.x, (plain.train.x - 0.5) / 0.25)


def test_red_top_half_is_what_the_class_shows(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=6)
    splits = _load(root, image_size=8)
    circles = splits.train.x[splits.train.y == 0]  # class 0 has a bright red top half
    red = circles[:, 0]
    assert float(red[:, :3].mean()) > float(red[:, 5:].mean()) + 0.3


def test_split_folders_are_used_as_they_are_with_transfer(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=10, split_layout=True, transfer=5)
    splits = _load(root, image_size=8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert splits.transfer is not None and len(splits.transfer) == 5
    assert bool((splits.transfer.y == -1).all())
    assert _load(root, seed=1, image_size=8).fingerprint() == splits.fingerprint()


def test_transfer_dir_adds_unlabeled_images(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=6)
    extra = write_image_folder(tmp_path / "x", per_class=1, transfer=7)
    splits = _load(root, image_size=8, transfer_dir=str(extra))
    assert splits.transfer is not None and len(splits.transfer) == 7


def test_streaming_decodes_the_same_images(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=6)
    memory = _load(root, image_size=8)
    stream = _load(root, image_size=8, storage="stream", num_workers=0)
    assert isinstance(stream.test.x, ImageFileInputs)
    torch.testing.assert_close(materialize(stream.test.x), memory.test.x)
    torch.testing.assert_close(stream.train.y, memory.train.y)


def test_bad_folders_and_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        _load(tmp_path / "missing")
    root = write_image_folder(tmp_path / "images", per_class=4)
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="'empty' holds no images"):
        _load(root)
    (root / "empty").rmdir()
    (root / "circle" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        _load(root, image_size=8)
