"""Dataset ``in_memory`` with regression and multilabel targets (``task`` param)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdforge.config import PluginRef
from kdforge.data import DataSplits
from kdforge.errors import DataError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets.in_memory import InMemory


def _load(data, transfer=None, **params) -> DataSplits:
    key = InMemory.hold(data, transfer=transfer)
    try:
        return InMemory(InMemory.Params(key=key, **params)).load(0)
    finally:
        InMemory.release(key)


def _check_with_task(splits: DataSplits) -> None:
    instantiate("task", PluginRef(name=splits.info.task), "task").check(splits)


def _rows(n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    y = torch.stack([3 * x[:, 0] - 2 * x[:, 1], x[:, 2]], dim=1)
    return x, y


def test_float_rows_make_a_regression_dataset() -> None:
    x, y = _rows()
    y[4] = float("nan")  # an unlabeled row
    splits = _load((x, y), transfer=x[:5], task="regression", target_names=["a", "b"])
    info = splits.info
    assert (info.task, info.num_classes, info.class_names) == ("regression", 2, ("a", "b"))
    assert splits.train.y.dtype == torch.float32 and splits.train.y.shape[1] == 2
    assert splits.transfer is not None and len(splits.transfer) == 6
    assert bool(torch.isnan(splits.transfer.y).all())
    for split in (splits.train, splits.val, splits.test):
        torch.testing.assert_close(split.y[:, 1], split.x[:, 2])  # rows keep their targets
    _check_with_task(splits)
    one = _load((x.numpy(), y[:, 0].tolist()), task="regression")  # lists, one target
    assert one.info.class_names == ("target_0",) and one.test.y.shape[1] == 1


def test_multilabel_rows_from_a_dict_of_splits() -> None:
    x, y = _rows(90)
    labels = (y > 0).to(torch.float32)
    data = {"train": (x[:60], labels[:60]), "test": (x[60:], labels[60:].numpy().astype(bool))}
    splits = _load(data, task="multilabel")
    assert splits.info.task == "multilabel" and splits.info.class_names == ("label_0", "label_1")
    assert len(splits.test) == 30 and splits.test.y.dtype == torch.float32
    _check_with_task(splits)


def test_targets_that_do_not_fit_the_task_are_refused() -> None:
    x, y = _rows(40)
    with pytest.raises(DataError, match=r"float32 of shape \(40, 2\), not one class per row"):
        _load((x, y))
    with pytest.raises(DataError, match="have the value -2 at row 0, column 0"):
        _load((x, torch.full((40, 2), -2.0)), task="multilabel")
    with pytest.raises(DataError, match="task regression needs numbers"):
        _load((x, ["a", "b"] * 20), task="regression")
    with pytest.raises(DataError, match=r"labels have shape \(40, 2, 1\)"):
        _load((x, np.zeros((40, 2, 1))), task="regression")
