"""Small cached teacher outputs are copied into a trial's memory; large or top-k stay mapped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdforge.search import trial
from kdforge.search.trial import resident
from kdforge.teacher.cached_rows import CachedRows, save_rows


def _rows(folder: Path, tensor: torch.Tensor, top_k: int | None = None) -> CachedRows:
    return CachedRows(folder, save_rows(folder, "logits_train", tensor, top_k=top_k))


def test_small_dense_rows_become_one_tensor_with_the_same_values(tmp_path: Path) -> None:
    logits = torch.randn(50, 10)
    kept = resident(_rows(tmp_path, logits))
    assert isinstance(kept, torch.Tensor)
    assert torch.equal(kept, logits)


def test_rows_over_the_limit_and_top_k_rows_stay_memory_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trial, "RESIDENT_TEACHER_BYTES", 50 * 10 * 4 - 1)
    assert isinstance(resident(_rows(tmp_path, torch.randn(50, 10))), CachedRows)
    monkeypatch.setattr(trial, "RESIDENT_TEACHER_BYTES", 2**30)
    top = tmp_path / "top"
    top.mkdir()
    assert isinstance(resident(_rows(top, torch.randn(50, 10), top_k=3)), CachedRows)


def test_tensors_and_none_pass_through() -> None:
    tensor = torch.zeros(3, 2)
    assert resident(tensor) is tensor
    assert resident(None) is None
