"""Dataset ``arrays``: .npz and .npy files, given splits, dtypes, labels, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdforge.config import PluginRef
from kdforge.errors import ConfigError, DataError
from kdforge.plugin_host.resolve import instantiate
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


def _regression_arrays(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 4); y (n, 2): 3*x0 - 2*x1 + noise, and x2 + x3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.stack([3 * x[:, 0] - 2 * x[:, 1] + rng.normal(0, 0.1, n), x[:, 2] + x[:, 3]], 1)
    return x, y


def _check_with_task(splits) -> None:
    instantiate("task", PluginRef(name=splits.info.task), "task").check(splits)


def test_regression_targets(tmp_path: Path) -> None:
    x, y = _regression_arrays()
    y[5] = np.nan  # an unlabeled row
    y[6, 1] = np.nan  # one unknown value
    np.savez(tmp_path / "d.npz", x=x, y=y)
    splits = _load(tmp_path / "d.npz", task="regression", target_names=["price", "demand"])
    info = splits.info
    assert (info.task, info.num_classes, info.class_names) == ("regression", 2, ("price", "demand"))
    for split in (splits.train, splits.val, splits.test):
        assert split.y.dtype == torch.float32 and split.y.shape == (len(split), 2)
        for row, target in zip(split.x[:5], split.y[:5], strict=True):
            match = np.flatnonzero((x == row.numpy()).all(axis=1))[0]
            expected = torch.from_numpy(y[match].astype(np.float32))
            torch.testing.assert_close(target, expected, equal_nan=True)
    assert splits.transfer is not None and len(splits.transfer) == 1
    assert bool(torch.isnan(splits.transfer.y).all())
    _check_with_task(splits)
    one = _load(tmp_path / "d.npz", task="regression", y_key="y", x_key="x")
    assert one.info.class_names == ("target_0", "target_1")


def test_regression_npy_with_one_target_and_given_splits(tmp_path: Path) -> None:
    x, y = _regression_arrays(100)
    for name, rows in (
        ("train", slice(0, 70)),
        ("test", slice(70, 90)),
        ("transfer", slice(90, None)),
    ):
        np.save(tmp_path / f"x_{name}.npy", x[rows])
        if name != "transfer":
            np.save(tmp_path / f"y_{name}.npy", y[rows, 0])  # (n,): one target
    splits = _load(
        tmp_path / "x_{split}.npy",
        labels=str(tmp_path / "y_{split}.npy"),
        task="regression",
        storage="stream",
    )
    assert splits.info.num_classes == 1 and splits.test.y.shape == (20, 1)
    assert splits.transfer is not None and splits.transfer.y.shape == (10, 1)
    assert bool(torch.isnan(splits.transfer.y).all())
    _check_with_task(splits)


def test_multilabel_targets(tmp_path: Path) -> None:
    x, _ = _regression_arrays()
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 0] + x[:, 1] > 1], 1)  # bool (n, 3)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    splits = _load(tmp_path / "d.npz", task="multilabel")
    assert splits.info.task == "multilabel" and splits.info.num_classes == 3
    assert splits.info.class_names == ("label_0", "label_1", "label_2")
    assert splits.train.y.dtype == torch.float32 and splits.train.y.shape[1] == 3
    assert set(splits.train.y.unique().tolist()) == {0.0, 1.0}
    _check_with_task(splits)


def test_labels_that_do_not_fit_the_task_are_refused(tmp_path: Path) -> None:
    x, y = _regression_arrays(60)
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    with pytest.raises(DataError, match=r"are float64 of shape \(60, 2\), not one class per row"):
        _load(tmp_path / "rows.npz")
    np.savez(tmp_path / "real.npz", x=x, y=y[:, 0])
    with pytest.raises(DataError, match=r"non-integer values \(e\.g\. .*\), not class ids") as info:
        _load(tmp_path / "real.npz")
    assert "task: regression" in (info.value.hint or "")
    with pytest.raises(DataError, match=r"have the value -2 at row 0, column 0"):
        np.savez(tmp_path / "ints.npz", x=x, y=np.full((60, 2), -2))
        _load(tmp_path / "ints.npz", task="multilabel")
    np.savez(tmp_path / "names.npz", x=x, y=np.array(["a", "b"] * 30))
    with pytest.raises(DataError, match=r"are <U1 of shape \(60,\); task regression needs numbers"):
        _load(tmp_path / "names.npz", task="regression")
    with pytest.raises(DataError, match="target_names has 1 names for 2 columns"):
        _load(tmp_path / "rows.npz", task="regression", target_names=["price"])
    with pytest.raises(ConfigError, match="target_names names the columns"):
        ref = PluginRef(name="arrays", params={"path": "d.npz", "target_names": ["a"]})
        instantiate("dataset", ref, "dataset")


def _position_npz(path: Path, *, causal: bool = True, rows: int = 50) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 30, size=(rows, 8))
    y = np.concatenate([x[:, 1:], np.full((rows, 1), -2)], axis=1) if causal else x % 3
    parts = {"train": slice(0, 30), "val": slice(30, 40), "test": slice(40, rows)}
    arrays = {
        f"{k}_{name}": a[rows_of]
        for name, rows_of in parts.items()
        for k, a in (("x", x), ("y", y))
    }
    np.savez(path, **arrays, x_transfer=x[:10])
    return path


def test_language_modeling_targets_per_position(tmp_path: Path) -> None:
    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate

    splits = _load(_position_npz(tmp_path / "lm.npz"), task="language_modeling", num_classes=32)
    info = splits.info
    assert info.task == "language_modeling" and info.per_position
    assert info.num_classes == 32 and info.vocab_size == 32 and info.class_names is None
    assert splits.train.y.dtype == torch.int64 and splits.train.y.shape[1] == 8
    # Transfer rows (no y) are distilled at every position and scored at none.
    assert set(splits.transfer.y.unique().tolist()) == {-1}
    task = instantiate("task", PluginRef(name="language_modeling"), "task")
    task.check(splits)  # causal: every target is the next input token


def test_token_tags_per_position_and_refusals(tmp_path: Path) -> None:
    splits = _load(_position_npz(tmp_path / "t.npz", causal=False), task="token_classification")
    assert splits.info.num_classes == 3 and splits.info.vocab_size == 30
    with pytest.raises(DataError, match="tags go up to 2, but num_classes is 2"):
        _load(tmp_path / "t.npz", task="token_classification", num_classes=2)
    with pytest.raises(DataError, match="token ids go up to 29, but num_classes"):
        _load(tmp_path / "t.npz", task="language_modeling", num_classes=10)
    np.savez(tmp_path / "flat.npz", x=np.zeros((20, 8), np.int64), y=np.zeros(20, np.int64))
    with pytest.raises(DataError, match="one integer target per input position"):
        _load(tmp_path / "flat.npz", task="language_modeling")
    with pytest.raises(ValueError, match="num_classes and pad_token_id describe per-position"):
        _load(tmp_path / "flat.npz", num_classes=3)
