"""The shared split rules: given splits as they are, else seeded and stratified."""

from __future__ import annotations

import numpy as np
import pytest

from kdforge.errors import DataError
from kdforge.plugins.datasets._splits import (
    FileDatasetParams,
    RowSources,
    assign_splits,
    encode_labels,
    expand_split_paths,
)

PARAMS = FileDatasetParams()


def _labels(n: int = 300, classes: int = 3) -> np.ndarray:
    return np.arange(n) % classes


def _all_rows(rows) -> np.ndarray:
    parts = [rows.train, rows.val, rows.test]
    if rows.transfer is not None:
        parts.append(rows.transfer)
    return np.concatenate(parts)


def test_random_split_is_complete_disjoint_stratified_and_seeded() -> None:
    labels = _labels()
    rows = assign_splits(labels, None, PARAMS, seed=0, where="t")
    everything = _all_rows(rows)
    assert sorted(everything.tolist()) == list(range(300))
    assert len(rows.val) == pytest.approx(300 * PARAMS.val_fraction, abs=1)
    assert len(rows.test) == pytest.approx(300 * PARAMS.test_fraction, abs=1)
    for part in (rows.train, rows.val, rows.test):
        counts = np.bincount(labels[part], minlength=3)
        assert counts.max() - counts.min() <= 1
    again = assign_splits(labels, None, PARAMS, seed=0, where="t")
    other = assign_splits(labels, None, PARAMS, seed=1, where="t")
    assert np.array_equal(rows.test, again.test)
    assert not np.array_equal(rows.test, other.test)


def test_given_splits_are_used_as_they_are() -> None:
    labels = _labels(30)
    given = ["train"] * 20 + ["val"] * 4 + ["test"] * 6
    rows = assign_splits(labels, given, PARAMS, seed=5, where="t")
    assert rows.train.tolist() == list(range(20))
    assert rows.val.tolist() == list(range(20, 24))
    assert rows.test.tolist() == list(range(24, 30))
    assert rows.transfer is None


def test_missing_val_is_carved_from_train_only() -> None:
    labels = _labels(60)
    given = ["train"] * 48 + ["test"] * 12
    rows = assign_splits(labels, given, PARAMS, seed=0, where="t")
    assert rows.test.tolist() == list(range(48, 60))
    assert set(rows.val.tolist()) <= set(range(48)) and len(rows.val) > 0
    assert not set(rows.val.tolist()) & set(rows.train.tolist())


def test_unlabeled_rows_and_transfer_fraction_form_the_transfer_split() -> None:
    labels = _labels(120)
    labels[:12] = -1
    params = FileDatasetParams(transfer_fraction=0.25)
    rows = assign_splits(labels, None, params, seed=0, where="t")
    assert rows.transfer is not None
    assert set(range(12)) <= set(rows.transfer.tolist())
    hidden = len(rows.transfer) - 12
    assert hidden == pytest.approx(0.25 * (len(rows.train) + hidden), abs=1)
    assert (labels[rows.train] >= 0).all() and (labels[rows.val] >= 0).all()


def test_given_transfer_rows_next_to_a_random_split() -> None:
    labels = _labels(40)
    labels[30:] = -1
    given = [""] * 30 + ["transfer"] * 10
    rows = assign_splits(labels, given, PARAMS, seed=0, where="t")
    assert rows.transfer is not None and rows.transfer.tolist() == list(range(30, 40))
    assert len(rows.train) + len(rows.val) + len(rows.test) == 30


def test_tiny_classes_fall_back_to_an_unstratified_split() -> None:
    labels = np.array([0] * 20 + [1])
    rows = assign_splits(labels, None, PARAMS, seed=0, where="t")
    assert len(_all_rows(rows)) == 21


@pytest.mark.parametrize(
    ("labels", "given", "match"),
    [
        (np.array([0, 1] * 5), ["train"] * 8 + [""] * 2, "have no split"),
        (np.array([0, 1] * 5), ["val"] * 5 + ["test"] * 5, "no train split"),
        (np.array([0, 1, -1, 1]), ["train", "train", "val", "test"], "val split have no label"),
        (np.array([0, 1]), None, "cannot be split"),
    ],
)
def test_bad_splits_raise_data_errors(labels, given, match) -> None:
    with pytest.raises(DataError, match=match):
        assign_splits(labels, given, PARAMS, seed=0, where="t")


def test_labels_keep_integer_classes_and_sort_strings() -> None:
    codes, names = encode_labels(np.array([2, 0, -1, 2]), "t")
    assert codes.tolist() == [2, 0, -1, 2] and names == ("0", "1", "2")
    codes, names = encode_labels(["dog", None, "cat", float("nan"), ""], "t")
    assert codes.tolist() == [1, -1, 0, -1, -1] and names == ("cat", "dog")
    codes, _ = encode_labels([1.0, 0.0, float("nan")], "t")
    assert codes.tolist() == [1, 0, -1]
    with pytest.raises(DataError, match="negative label"):
        encode_labels(np.array([0, -3]), "t")


def test_split_placeholder_finds_split_files(tmp_path) -> None:
    for name in ("train", "validation", "test"):
        (tmp_path / f"{name}.csv").write_text("a\n")
    found = expand_split_paths(str(tmp_path / "{split}.csv"), "t")
    assert {k: v.name for k, v in found.items()} == {
        "train": "train.csv",
        "val": "validation.csv",
        "test": "test.csv",
    }
    with pytest.raises(DataError, match="no training file"):
        expand_split_paths(str(tmp_path / "{split}.tsv"), "t")
    with pytest.raises(DataError, match="does not exist"):
        expand_split_paths(str(tmp_path / "nope.csv"), "t")


def test_row_sources_locate_rows_per_source() -> None:
    sources = RowSources(["a", "b", "c"], [3, 0, 4])
    groups = sources.locate(np.array([1, 2, 3, 6]))
    assert [(k, v.tolist()) for k, v in groups] == [("a", [1, 2]), ("c", [0, 3])]
