"""Dataset ``tabular`` for regression (``targets``) and multilabel (``labels``) tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kdforge.config import PluginRef
from kdforge.data import DataSplits
from kdforge.errors import ConfigError, DataError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets.tabular import Tabular


def _plugin(path: Path | str, **params) -> Tabular:
    ref = PluginRef(name="tabular", params={"path": str(path), **params})
    return instantiate("dataset", ref, "dataset")


def _check_with_task(splits: DataSplits) -> None:
    """The built-in task the dataset names accepts what it produced."""
    instantiate("task", PluginRef(name=splits.info.task), "task").check(splits)


def regression_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """price = 3*x1 - 2*x2 + noise, demand = x1 + x2; a categorical feature too."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "city": rng.choice(["oslo", "rome"], n),
            "price": 3 * x1 - 2 * x2 + rng.normal(scale=0.1, size=n),
            "demand": x1 + x2,
        }
    )


def multilabel_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Two features; tag_a = x1 > 0 (0/1), tag_b = x2 > 0 (true/false), tag_c = both."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "tag_a": (x1 > 0).astype(int),
            "tag_b": x2 > 0,
            "tag_c": np.where((x1 > 0) & (x2 > 0), "1", "0"),
        }
    )


def test_regression_targets_are_float_rows(tmp_path: Path) -> None:
    frame = regression_frame()
    frame["price"] = frame["price"].astype(object)
    frame.loc[3, "price"] = None  # one unknown cell: the row stays labeled
    frame.loc[[4, 5], ["price", "demand"]] = None  # no target at all: unlabeled rows
    frame.to_csv(tmp_path / "t.csv", index=False)
    plugin = _plugin(tmp_path / "t.csv", targets=["price", "demand"])
    splits = plugin.load(0)
    info = splits.info
    assert (info.task, info.num_classes, info.class_names) == (
        "regression",
        2,
        ("price", "demand"),
    )
    # The targets are no features; the categorical column is still one-hot encoded.
    assert plugin.feature_names == ["x1", "x2", "city=oslo", "city=rome"]
    assert info.input_shape == (4,)
    for split in (splits.train, splits.val, splits.test):
        assert split.y.dtype == torch.float32 and split.y.shape == (len(split), 2)
    assert splits.transfer is not None and len(splits.transfer) == 2
    assert bool(torch.isnan(splits.transfer.y).all())
    labeled = len(splits.train) + len(splits.val) + len(splits.test)
    assert labeled == 198
    cells = torch.cat([splits.train.y, splits.val.y, splits.test.y])
    assert int(torch.isnan(cells).sum()) == 1  # the one unknown price
    # The rows keep their targets: price follows the known function of the raw inputs.
    x = splits.train.x[:, :2] * torch.tensor(
        [plugin.encoder.stds["x1"], plugin.encoder.stds["x2"]]
    ) + torch.tensor([plugin.encoder.means["x1"], plugin.encoder.means["x2"]])
    known = ~torch.isnan(splits.train.y[:, 0])
    predicted = 3 * x[known, 0] - 2 * x[known, 1]
    assert float((predicted - splits.train.y[known, 0]).abs().max()) < 0.5
    torch.testing.assert_close(splits.train.y[:, 1], x[:, 0] + x[:, 1], atol=1e-4, rtol=0)
    _check_with_task(splits)


def test_regression_splits_are_seeded_and_unstratified(tmp_path: Path) -> None:
    regression_frame(100).to_parquet(tmp_path / "t.parquet")
    first = _plugin(tmp_path / "t.parquet", targets=["price"], transfer_fraction=0.2).load(3)
    again = _plugin(tmp_path / "t.parquet", targets=["price"], transfer_fraction=0.2).load(3)
    assert first.fingerprint() == again.fingerprint()
    assert len(first.val) + len(first.test) == 35 and len(first.transfer or []) == 13
    assert first.info.num_classes == 1 and first.train.y.shape[1] == 1
    assert first.transfer is not None and bool(torch.isnan(first.transfer.y).all())
    _check_with_task(first)


def test_multilabel_columns_take_0_1_and_true_false(tmp_path: Path) -> None:
    frame = multilabel_frame().astype({"tag_a": object, "tag_b": object, "tag_c": object})
    frame.loc[7, "tag_c"] = None  # unknown label
    frame.loc[8, ["tag_a", "tag_b", "tag_c"]] = None  # unlabeled row
    frame.to_csv(tmp_path / "t.csv", index=False)
    plugin = _plugin(tmp_path / "t.csv", labels=["tag_a", "tag_b", "tag_c"])
    splits = plugin.load(0)
    info = splits.info
    assert (info.task, info.num_classes, info.class_names) == (
        "multilabel",
        3,
        ("tag_a", "tag_b", "tag_c"),
    )
    assert plugin.feature_names == ["x1", "x2"]
    cells = torch.cat([splits.train.y, splits.val.y, splits.test.y])
    assert cells.dtype == torch.float32 and cells.shape == (119, 3)
    known = cells[~torch.isnan(cells)]
    assert set(known.unique().tolist()) == {0.0, 1.0} and len(known) == 119 * 3 - 1
    # tag_a is x1 > 0: the (standardised) input's sign agrees with it after un-scaling.
    raw_x1 = splits.train.x[:, 0] * plugin.encoder.stds["x1"] + plugin.encoder.means["x1"]
    assert torch.equal(splits.train.y[:, 0], (raw_x1 > 0).float())
    assert splits.transfer is not None and bool(torch.isnan(splits.transfer.y).all())
    _check_with_task(splits)


def test_multilabel_jsonl_booleans_and_transfer_file_without_labels(tmp_path: Path) -> None:
    frame = multilabel_frame(100)
    frame["tag_a"] = frame["tag_a"].astype(bool)
    frame.iloc[:70].to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    frame.iloc[70:90].to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    frame.iloc[90:].drop(columns=["tag_a", "tag_b", "tag_c"]).to_json(
        tmp_path / "transfer.jsonl", orient="records", lines=True
    )
    splits = _plugin(tmp_path / "{split}.jsonl", labels=["tag_a", "tag_b", "tag_c"]).load(0)
    assert len(splits.test) == 20 and splits.transfer is not None
    assert len(splits.transfer) == 10 and bool(torch.isnan(splits.transfer.y).all())
    _check_with_task(splits)


def test_classification_still_reads_one_target(tmp_path: Path) -> None:
    frame = multilabel_frame(90)
    frame["kind"] = np.arange(90) % 3
    frame.to_csv(tmp_path / "t.csv", index=False)
    splits = _plugin(tmp_path / "t.csv", target="kind", features=["x1", "x2"]).load(0)
    assert splits.info.task == "classification" and splits.train.y.dtype == torch.int64
    _check_with_task(splits)


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ({}, "none is set"),
        ({"target": "price", "targets": ["demand"]}, "got target and targets"),
        ({"targets": ["price"], "labels": ["tag_a"]}, "got targets and labels"),
        ({"targets": []}, "targets lists no column"),
        ({"labels": ["a", "a"]}, "labels lists ['a'] more than once"),
    ],
)
def test_exactly_one_of_target_targets_labels(keys: dict, said: str) -> None:
    with pytest.raises(ConfigError) as info:
        _plugin("t.csv", **keys)
    message = str(info.value)
    assert said in message
    if "got" in said or "none" in said:
        assert "target (" in message and "targets (" in message and "labels (" in message


def test_text_in_a_regression_column_names_column_file_and_line(tmp_path: Path) -> None:
    frame = regression_frame(50)
    frame["price"] = frame["price"].astype(object)
    frame.loc[6, "price"] = "n/a?"
    frame.loc[9, "price"] = "abc"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError) as info:
        _plugin(tmp_path / "t.csv", targets=["demand", "price"]).load(0)
    message = str(info.value)
    assert "'price'" in message and "'n/a?'" in message
    assert f"{tmp_path / 't.csv'} line 8" in message  # header is line 1, row 6 is line 8


def test_infinity_in_a_regression_column_is_refused(tmp_path: Path) -> None:
    frame = regression_frame(50)
    frame.loc[2, "demand"] = np.inf
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"'demand' holds .*inf.* row 3, not a finite number"):
        _plugin(tmp_path / "t.parquet", targets=["demand"]).load(0)


def test_bad_label_value_names_column_file_and_line(tmp_path: Path) -> None:
    frame = multilabel_frame(60)
    frame.iloc[:40].to_csv(tmp_path / "train.csv", index=False)
    test = frame.iloc[40:].copy()
    test["tag_b"] = test["tag_b"].astype(object)
    test.iloc[4, test.columns.get_loc("tag_b")] = "maybe"
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError) as info:
        _plugin(tmp_path / "{split}.csv", labels=["tag_a", "tag_b"]).load(0)
    message = str(info.value)
    assert "labels column 'tag_b'" in message and "'maybe'" in message
    assert f"{tmp_path / 'test.csv'} line 6" in message
    frame["tag_a"] = np.where(np.arange(60) == 10, 2, frame["tag_a"])
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"'tag_a' holds 2 at .*t\.jsonl line 11"):
        _plugin(tmp_path / "t.jsonl", labels=["tag_a"]).load(0)


def test_target_columns_must_exist_and_not_be_features(tmp_path: Path) -> None:
    regression_frame(50).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="targets: no column 'prize'") as info:
        _plugin(tmp_path / "t.csv", targets=["prize"]).load(0)
    assert "did you mean 'price'" in (info.value.hint or "")
    with pytest.raises(DataError, match="targets column 'price' is also a feature"):
        _plugin(tmp_path / "t.csv", targets=["price"], features=["x1", "price"]).load(0)
    with pytest.raises(DataError, match="labels: no column 'tag_z'"):
        _plugin(tmp_path / "t.csv", labels=["tag_z"]).load(0)
