"""A space whose students cannot run on the data is refused before Ray starts (#22)."""

from __future__ import annotations

import pytest
import torch

from kdforge.data import DataInfo, DataSplits, Split
from kdforge.errors import ConfigError
from kdforge.search.checks import check_student_space
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
