"""The split has its own seed, and a search refuses to test on rows its teacher trained on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdforge.config import SearchConfig
from kdforge.errors import DataError
from kdforge.search.plan import plan_search
from kdforge.search.run import load_data
from tests.conftest import tiny_search_config


def _load(teacher: Path, tmp_path: Path, **overrides):
    raw = tiny_search_config(teacher, tmp_path, **overrides)
    config = SearchConfig.model_validate(raw)
    return load_data(plan_search(config, tracking_uri=raw["tracking"]["uri"]))


def test_the_split_does_not_move_with_the_search_seed(digits_teacher_path, tmp_path) -> None:
    first = _load(digits_teacher_path, tmp_path, seed=0).splits
    other = _load(digits_teacher_path, tmp_path, seed=3).splits
    assert torch.equal(first.test.x, other.test.x) and torch.equal(first.train.x, other.train.x)


def test_the_teacher_checkpoint_records_its_split(digits_teacher_path) -> None:
    from kdforge.checkpoint import load_checkpoint

    meta = load_checkpoint(digits_teacher_path)["meta"]
    record = meta["split"]
    assert record["dataset"] == "digits" and record["split_seed"] == 0
    assert len(record["train_hashes"]) == record["rows"]["train"]


def test_a_search_on_another_split_than_the_teachers_refuses(digits_teacher_path, tmp_path) -> None:
    from kdforge.plugins.datasets.digits import Digits

    with pytest.raises(DataError) as caught:
        _load(digits_teacher_path, tmp_path, **{"dataset.split_seed": 3})
    test = Digits().load(3).test
    trained = {row.tobytes() for row in Digits().load(0).train.x.flatten(1).numpy()}
    leaked = sum(row.tobytes() in trained for row in test.x.flatten(1).numpy())
    message = str(caught.value)
    assert f"{leaked} of {len(test)} test rows" in message
    assert "training split" in message and "dataset.split_seed: 0" in caught.value.hint


def test_an_old_checkpoint_is_checked_by_its_seed(digits_teacher_path, tmp_path) -> None:
    """A checkpoint from before split_seed (no split record) was split by its `seed`."""
    from kdforge.checkpoint import load_checkpoint

    payload = load_checkpoint(digits_teacher_path)
    payload["meta"].pop("split")
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    assert _load(old, tmp_path).splits is not None  # same seed: fine
    with pytest.raises(DataError, match="another split"):
        _load(old, tmp_path, **{"dataset.split_seed": 5})
