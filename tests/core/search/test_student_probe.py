"""Checks at the start of a search (#22): the student probe, the split sizes line, the
teacher val/test gap warning."""

from __future__ import annotations

import pytest
import torch

from kdforge.data import DataInfo, DataSplits, Split
from kdforge.errors import ConfigError
from kdforge.search.checks import check_student_space, describe_splits, teacher_gap_warning
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.transformer import TransformerSpace


def _token_splits(rows: int = 8, length: int = 12, vocab: int = 50) -> DataSplits:
    info = DataInfo("reviews", (length,), 3, input_dtype="int64", vocab_size=vocab, pad_token_id=0)

    def split() -> Split:
        return Split(torch.randint(1, vocab, (rows, length)), torch.arange(rows) % 3)

    return DataSplits(info, split(), split(), split())


def _float_splits(rows: int = 8) -> DataSplits:
    info = DataInfo("blobs", (6,), 3)

    def split() -> Split:
        return Split(torch.randn(rows, 6), torch.arange(rows) % 3)

    return DataSplits(info, split(), split(), split())


def test_mlp_on_token_ids_is_refused_naming_the_space_and_the_dtype() -> None:
    with pytest.raises(ConfigError) as err:
        check_student_space(_token_splits(), MLPSpace(), "mlp")
    message = str(err.value)
    assert "student space 'mlp'" in message and "dataset 'reviews'" in message
    assert "(12,) int64" in message and "dtype" in message
    assert "transformer" in (err.value.hint or "")


def test_spaces_that_fit_their_inputs_pass() -> None:
    check_student_space(_token_splits(), TransformerSpace(), "transformer")
    check_student_space(_float_splits(), MLPSpace(), "mlp")


def test_wrong_logits_shape_is_refused() -> None:
    class _Narrow(MLPSpace):
        def build(self, arch, info):
            return torch.nn.Linear(info.input_shape[0], info.num_classes + 1)

    with pytest.raises(ConfigError, match=r"returns \(2, 4\) for 2 rows, expected \(2, 3\)"):
        check_student_space(_float_splits(), _Narrow(), "narrow")


def test_split_sizes_line_counts_transfer_rows() -> None:
    splits = _float_splits(rows=10)
    assert describe_splits(splits) == (
        "data blobs: train 10 rows, val 10, test 10, transfer 0 unlabeled rows "
        "(none: the student learns on train only)"
    )
    splits.train.y[:3] = -1  # hidden labels count as transfer rows
    splits.transfer = Split(torch.randn(5, 6), torch.full((5,), -1))
    assert describe_splits(splits) == (
        "data blobs: train 7 rows, val 10, test 10, transfer 8 unlabeled rows"
    )


def test_teacher_gap_warning() -> None:
    # The case: 0.99 on val (carved from the teacher's training file), 0.79 on test.
    warning = teacher_gap_warning({"val": 0.99, "test": 0.79}, 200, 500, "val")
    assert warning is not None and "val_acc 0.9900 is far above its test_acc 0.7900" in warning
    assert "teacher.held_out: test" in warning
    # Said so by the user, or within chance, or a small gap: nothing.
    assert teacher_gap_warning({"val": 0.99, "test": 0.79}, 200, 500, "test") is None
    assert teacher_gap_warning({"val": 0.9, "test": 0.7}, 10, 10, "val") is None
    assert teacher_gap_warning({"val": 0.83, "test": 0.80}, 5000, 5000, "val") is None
    assert teacher_gap_warning({"val": 0.7, "test": 0.9}, 5000, 5000, "val") is None


def test_teacher_held_out_is_a_config_key() -> None:
    from kdforge.config import SearchConfig

    base = {
        "name": "x",
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint", "params": {"path": "t.pt"}},
        "student": {"name": "mlp"},
    }
    assert SearchConfig.model_validate(base).teacher.held_out == "val"
    base["teacher"]["held_out"] = "test"
    assert SearchConfig.model_validate(base).teacher.held_out == "test"
    base["teacher"]["held_out"] = "train"
    with pytest.raises(ValueError, match="held_out"):
        SearchConfig.model_validate(base)
