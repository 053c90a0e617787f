"""``use_transfer: false``: every file-based dataset can leave out the unlabeled rows it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdforge.config import PluginRef
from kdforge.errors import ConfigError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets.arrays import Arrays
from kdforge.plugins.datasets.image_folder import ImageFolder
from kdforge.plugins.datasets.tabular import Tabular
from tests.plugins.datasets.builders import blobs, table_rows, write_image_folder


def _npy_split_files(folder: Path) -> Path:
    """x_{split}.npy/y_{split}.npy with an unreadable x_transfer.npy beside them."""
    x, y = blobs(90)
    for name, rows in (("train", slice(0, 60)), ("test", slice(60, 90))):
        np.save(folder / f"x_{name}.npy", x[rows])
        np.save(folder / f"y_{name}.npy", y[rows])
    (folder / "x_transfer.npy").write_bytes(b"not an npy file")
    return folder / "x_{split}.npy"


def test_a_present_transfer_file_is_not_even_read(tmp_path: Path) -> None:
    pattern = _npy_split_files(tmp_path)
    labels = str(tmp_path / "y_{split}.npy")
    splits = Arrays(Arrays.Params(path=str(pattern), labels=labels, use_transfer=False)).load(0)
    assert splits.transfer is None and len(splits.test) == 30
    with pytest.raises(Exception, match="x_transfer"):  # used by default, and it is broken
        Arrays(Arrays.Params(path=str(pattern), labels=labels)).load(0)


def test_npz_transfer_member_is_left_out(tmp_path: Path) -> None:
    x, y = blobs(100)
    np.savez(tmp_path / "d.npz", x_train=x[:80], y_train=y[:80], x_transfer=x[80:])
    params = {"path": str(tmp_path / "d.npz")}
    assert Arrays(Arrays.Params(**params)).load(0).transfer is not None
    splits = Arrays(Arrays.Params(**params, use_transfer=False)).load(0)
    assert splits.transfer is None
    assert len(splits.train) + len(splits.val) + len(splits.test) == 80


def test_tabular_transfer_file_and_unlabeled_rows_are_left_out(tmp_path: Path) -> None:
    frame = pd.DataFrame(table_rows(120))
    frame.loc[110:, "species"] = None  # unlabeled rows in the training file
    pd.concat([frame.iloc[:70], frame.iloc[110:]]).to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[70:100].to_csv(tmp_path / "test.csv", index=False)
    frame.iloc[100:110].drop(columns="species").to_csv(tmp_path / "transfer.csv", index=False)
    pattern = str(tmp_path / "{split}.csv")
    splits = Tabular(Tabular.Params(path=pattern, target="species", use_transfer=False)).load(0)
    assert splits.transfer is None
    assert len(splits.train) + len(splits.val) == 70 and len(splits.test) == 30


def test_image_transfer_folder_is_left_out(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=10, split_layout=True, transfer=5)
    kept = ImageFolder(ImageFolder.Params(root=str(root), image_size=8)).load(0)
    assert kept.transfer is not None and len(kept.transfer) == 5
    left = ImageFolder(ImageFolder.Params(root=str(root), image_size=8, use_transfer=False))
    splits = left.load(0)
    assert splits.transfer is None and len(splits.train) == len(kept.train)


def test_use_transfer_false_contradicts_transfer_fraction(tmp_path: Path) -> None:
    ref = PluginRef(
        name="arrays",
        params={"path": str(tmp_path / "d.npz"), "use_transfer": False, "transfer_fraction": 0.2},
    )
    with pytest.raises(ConfigError, match="use_transfer"):
        instantiate("dataset", ref, "dataset")
