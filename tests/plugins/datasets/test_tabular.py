"""Dataset ``tabular``: CSV/Parquet, encodings fitted on train only, splits, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kdforge.errors import DataError
from kdforge.plugins.datasets.tabular import Tabular
from kdforge.testing import DatasetContract
from tests.plugins.datasets.builders import table_rows, write_table


def _plugin(path: Path | str, **params) -> Tabular:
    return Tabular(Tabular.Params(path=str(path), target=params.pop("target", "species"), **params))


class TestTabularContract(DatasetContract):
    registered_name = "tabular"

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> Tabular:
        return _plugin(write_table(tmp_path / "iris.csv"), transfer_fraction=0.2)


def test_numeric_and_categorical_columns_are_encoded(tmp_path: Path) -> None:
    plugin = _plugin(write_table(tmp_path / "t.csv"))
    splits = plugin.load(0)
    assert plugin.feature_names == ["length", "width", "color=blue", "color=green", "color=red"]
    assert splits.info.input_shape == (5,) and splits.info.class_names == (
        "setosa",
        "versicolor",
        "virginica",
    )
    onehot = splits.train.x[:, 2:]
    assert torch.equal(onehot.sum(1), torch.ones(len(onehot)))
    assert bool(torch.isfinite(splits.train.x).all())  # missing widths are imputed
    ordinal = _plugin(tmp_path / "t.csv", categorical_encoding="ordinal").load(0)
    assert ordinal.info.input_shape == (3,)
    assert set(ordinal.train.x[:, 2].unique().tolist()) == {1.0, 2.0, 3.0}


def test_statistics_come_from_the_training_split_only(tmp_path: Path) -> None:
    frame = pd.DataFrame(table_rows(90))
    frame["split"] = ["train"] * 60 + ["val"] * 15 + ["test"] * 15
    frame.loc[60:, "length"] += 100.0  # val/test shifted far away from train
    frame.loc[75:, "color"] = "purple"  # a category never seen in training
    frame.to_csv(tmp_path / "t.csv", index=False)
    plugin = _plugin(tmp_path / "t.csv", split_column="split")
    splits = plugin.load(0)
    train_length = frame.loc[:59, "length"]
    assert plugin.encoder.means["length"] == pytest.approx(train_length.mean())
    assert plugin.encoder.stds["length"] == pytest.approx(train_length.std(ddof=0))
    assert abs(float(splits.train.x[:, 0].mean())) < 1e-5
    assert float(splits.val.x[:, 0].mean()) > 10  # standardised with train stats, not its own
    assert "color=purple" not in plugin.feature_names
    assert float(splits.test.x[:, 2:].abs().sum()) == 0.0  # unseen category: all zeros
    assert (len(splits.train), len(splits.val), len(splits.test)) == (60, 15, 15)


def test_parquet_gives_the_same_inputs_as_csv(tmp_path: Path) -> None:
    csv = _plugin(write_table(tmp_path / "t.csv")).load(0)
    parquet = _plugin(write_table(tmp_path / "t.parquet")).load(0)
    torch.testing.assert_close(csv.train.x, parquet.train.x)
    assert torch.equal(csv.test.y, parquet.test.y)


def test_split_files_and_unlabeled_rows(tmp_path: Path) -> None:
    frame = pd.DataFrame(table_rows(120))
    frame.loc[100:, "species"] = None  # unlabeled rows in the training file
    pd.concat([frame.iloc[:60], frame.iloc[100:]]).to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[60:100].to_csv(tmp_path / "test.csv", index=False)
    splits = _plugin(tmp_path / "{split}.csv").load(0)
    assert len(splits.test) == 40  # the given test file, as it is
    assert len(splits.train) + len(splits.val) == 60  # val carved from labeled train rows
    assert len(splits.val) == pytest.approx(60 * 0.15, abs=1)
    assert splits.transfer is not None and len(splits.transfer) == 20
    assert bool((splits.transfer.y == -1).all())


def test_explicit_features_and_categoricals(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv")
    plugin = _plugin(path, features=["length", "color"], categorical=["color"])
    assert plugin.load(0).info.input_shape == (4,)
    numbers_as_categories = _plugin(path, features=["color", "length"], categorical=["length"])
    assert numbers_as_categories.load(0).info.input_shape[0] > 10


def test_errors_name_the_column(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv")
    with pytest.raises(DataError, match="no column 'specie'") as info:
        _plugin(path, target="specie").load(0)
    assert "did you mean 'species'" in (info.value.hint or "")
    with pytest.raises(DataError, match="features: no column 'height'"):
        _plugin(path, features=["height"]).load(0)
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        _plugin(tmp_path / "t.xlsx").load(0)


def test_labels_may_be_integers(tmp_path: Path) -> None:
    frame = pd.DataFrame(table_rows(60))
    frame["species"] = np.arange(60) % 3
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert _plugin(tmp_path / "t.csv").load(0).info.class_names == ("0", "1", "2")


def test_transfer_file_may_leave_out_the_target(tmp_path: Path) -> None:
    frame = pd.DataFrame(table_rows(120))
    frame.iloc[:60].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[60:100].to_csv(tmp_path / "test.csv", index=False)
    frame.iloc[100:].drop(columns=["species"]).to_csv(tmp_path / "transfer.csv", index=False)
    splits = _plugin(tmp_path / "{split}.csv").load(0)
    assert splits.transfer is not None and len(splits.transfer) == 20
    assert bool((splits.transfer.y == -1).all()) and len(splits.test) == 40
