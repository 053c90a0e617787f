"""Dataset ``arrays``: .npz and .npy files, given splits, dtypes, labels, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdforge.errors import DataError
from kdforge.plugins.datasets.arrays import Arrays, NpyInputs
from kdforge.testing import DatasetContract
from tests.plugins.datasets.builders import blobs, write_npz


def _load(path: Path | str, seed: int = 0, **params):
    return Arrays(Arrays.Params(path=str(path), **params)).load(seed)


class TestArraysNpzContract(DatasetContract):
    registered_name = "arrays"

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> Arrays:
        return Arrays(Arrays.Params(path=str(write_npz(tmp_path / "d.npz"))))


class TestArraysStreamedNpyContract(DatasetContract):
    registered_name = "arrays"

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> Arrays:
        x, y = blobs(90)
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        return Arrays(
            Arrays.Params(
                path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"), storage="stream"
            )
        )


def test_npz_rows_keep_their_labels(tmp_path: Path) -> None:
    x, y = blobs(150)
    splits = _load(write_npz(tmp_path / "d.npz"))
    assert splits.info.input_shape == (6,) and splits.info.num_classes == 3
    for split in (splits.train, splits.val, splits.test):
        for row, label in zip(split.x[:5], split.y[:5], strict=True):
            match = np.flatnonzero((x == row.numpy()).all(axis=1))
            assert len(match) == 1 and y[match[0]] == int(label)


def test_npz_given_splits_and_transfer(tmp_path: Path) -> None:
    x, y = blobs(100)
    np.savez(
        tmp_path / "d.npz",
        x_train=x[:60], y_train=y[:60], x_val=x[60:75], y_val=y[60:75],
        x_test=x[75:90], y_test=y[75:90], x_transfer=x[90:],
    )  # fmt: skip
    splits = _load(tmp_path / "d.npz")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (60, 15, 15)
    assert torch.equal(splits.val.x, torch.from_numpy(x[60:75]))
    assert splits.transfer is not None and len(splits.transfer) == 10


def test_npy_split_pattern_with_unlabeled_transfer_file(tmp_path: Path) -> None:
    x, y = blobs(100)
    for name, rows in (
        ("train", slice(0, 70)),
        ("test", slice(70, 90)),
        ("transfer", slice(90, 100)),
    ):
        np.save(tmp_path / f"x_{name}.npy", x[rows])
        if name != "transfer":
            np.save(tmp_path / f"y_{name}.npy", y[rows])
    splits = _load(
        tmp_path / "x_{split}.npy", labels=str(tmp_path / "y_{split}.npy"), storage="stream"
    )
    assert isinstance(splits.test.x, NpyInputs) and len(splits.test) == 20
    assert len(splits.train) + len(splits.val) == 70
    assert splits.transfer is not None and len(splits.transfer) == 10


def test_input_dtypes_and_string_labels(tmp_path: Path) -> None:
    ids = np.random.default_rng(0).integers(0, 50, size=(60, 8)).astype(np.int32)
    names = np.array(["cat", "dog", "eel"] * 20)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "names.npy", names)
    tokens = _load(tmp_path / "ids.npy", labels=str(tmp_path / "names.npy"))
    assert tokens.info.input_dtype == "int64" and tokens.train.x.dtype == torch.int64
    assert tokens.info.class_names == ("cat", "dog", "eel")
    pixels = (ids * 5).astype(np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    scaled = _load(tmp_path / "pixels.npy", labels=str(tmp_path / "names.npy"), scale=1 / 255)
    assert scaled.info.input_dtype == "float32" and float(scaled.train.x.max()) <= 1.0
    forced = _load(tmp_path / "ids.npy", labels=str(tmp_path / "names.npy"), input_dtype="float32")
    assert forced.train.x.dtype == torch.float32


def test_bad_files_are_reported(tmp_path: Path) -> None:
    x, y = blobs(30)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:20])
    with pytest.raises(DataError, match=r"no labels for x\.npy"):
        _load(tmp_path / "x.npy")
    with pytest.raises(DataError, match="30 inputs but 20 labels"):
        _load(tmp_path / "x.npy", labels=str(tmp_path / "y.npy"))
    np.savez(tmp_path / "d.npz", inputs=x, targets=y)
    with pytest.raises(DataError, match="expected 'x' and 'y'"):
        _load(tmp_path / "d.npz")
    assert len(_load(tmp_path / "d.npz", x_key="inputs", y_key="targets").train) > 0
