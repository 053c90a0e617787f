"""The ``huggingface`` teacher as a token tagger, and its per-position outputs cached."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdforge.data import TopKLogits
from kdforge.errors import CheckpointError
from kdforge.plugins.teachers.huggingface import HuggingFaceTeacher
from kdforge.teacher.cached_rows import CachedRows, save_rows
from tests.plugins.datasets import tagging

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tagging.build_tagger(tmp_path_factory.mktemp("tagger"), steps=2)


def _teacher(path: Path, task: str) -> HuggingFaceTeacher:
    teacher = HuggingFaceTeacher(HuggingFaceTeacher.Params(path=str(path), task=task))
    teacher.load()
    return teacher


def test_token_classification_gives_logits_per_position(tagger: Path) -> None:
    teacher = _teacher(tagger, "token_classification")
    ids = torch.zeros(3, tagging.MAX_LENGTH, dtype=torch.long)
    ids[:, :4] = torch.tensor([2, 20, 21, 3])
    out = teacher.predict(ids)
    assert out.logits is not None and tuple(out.logits.shape) == (3, tagging.MAX_LENGTH, 3)
    assert teacher.expected_num_classes() == 3


def test_a_tagger_is_not_loaded_as_a_sequence_classifier(tagger: Path) -> None:
    with pytest.raises(CheckpointError, match="holds a token classification model"):
        _teacher(tagger, "sequence_classification")


def test_per_position_rows_are_cached_dense_or_as_per_position_top_k(tmp_path: Path) -> None:
    logits = torch.randn(5, 4, 3)
    spec = save_rows(tmp_path, "logits_train", logits)
    rows = CachedRows.from_spec(tmp_path, spec)
    assert rows.shape == logits.shape and rows.dim() == 3
    assert torch.equal(rows[torch.tensor([1, 3])], logits[[1, 3]])
    # With top_k, each position keeps its k largest logits and the log-sum-exp, read
    # sparse (the losses that can, lm_kd, train on them; the others are refused).
    top = save_rows(tmp_path, "logits_val", logits, top_k=2)
    assert top["encoding"] == "topk_lse" and top["k"] == 2
    sparse = CachedRows.from_spec(tmp_path, top)[torch.tensor([1, 3])]
    assert isinstance(sparse, TopKLogits)
    assert torch.equal(sparse.values, logits[[1, 3]].topk(2, dim=-1).values)
