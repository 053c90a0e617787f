"""Dataset ``text``: a local tokenizer's token ids, or bag of words; CSV and JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from kdforge.config import PluginRef
from kdforge.errors import ConfigError, DataError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets.text import TextDataset
from kdforge.testing import DatasetContract
from tests.plugins.datasets.builders import text_rows, write_jsonl, write_tokenizer

pytest.importorskip("transformers")


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    rows = text_rows(90, unlabeled=12)
    path = write_jsonl(tmp_path / "reviews.jsonl", rows)
    tokenizer = write_tokenizer(tmp_path / "tokenizer", [r["text"] for r in rows])
    return path, tokenizer


def _plugin(path: Path, **params: Any) -> TextDataset:
    return TextDataset(TextDataset.Params(path=str(path), **params))


class TestTextTokensContract(DatasetContract):
    registered_name = "text"

    @pytest.fixture
    def plugin(self, corpus) -> TextDataset:
        return _plugin(corpus[0], tokenizer=str(corpus[1]), max_length=10)


class TestTextBagOfWordsContract(DatasetContract):
    registered_name = "text"

    @pytest.fixture
    def plugin(self, corpus) -> TextDataset:
        return _plugin(corpus[0], representation="bag_of_words", max_features=40)


def test_tokens_come_from_the_local_tokenizer(corpus) -> None:
    from transformers import AutoTokenizer

    splits = _plugin(corpus[0], tokenizer=str(corpus[1]), max_length=10).load(0)
    tokenizer = AutoTokenizer.from_pretrained(str(corpus[1]))
    info = splits.info
    assert info.input_dtype == "int64" and info.input_shape == (10,)
    assert info.vocab_size == len(tokenizer) and info.pad_token_id == tokenizer.pad_token_id
    assert info.class_names == ("neg", "neutral", "pos")
    assert splits.transfer is not None and len(splits.transfer) == 12
    x = splits.test.x
    assert x.dtype == torch.int64 and int(x.max()) < info.vocab_size
    first = [t for t in tokenizer.convert_ids_to_tokens(x[0].tolist()) if t != "[PAD]"]
    assert len(first) == 6 and "[UNK]" not in first  # six words, all in the vocabulary


def test_bag_of_words_vocabulary_is_fitted_on_train_only(tmp_path: Path) -> None:
    rows = text_rows(60)
    frame = pd.DataFrame(rows)
    frame["split"] = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    frame.loc[50:, "text"] = frame.loc[50:, "text"] + " zebra"  # a word only in test
    frame.to_csv(tmp_path / "t.csv", index=False)
    plugin = _plugin(tmp_path / "t.csv", representation="bag_of_words", split_column="split")
    splits = plugin.load(0)
    assert "zebra" not in plugin.encoder.vocabulary and "awful" in plugin.encoder.vocabulary
    assert splits.info.input_dtype == "float32"
    assert splits.info.input_shape == (len(plugin.encoder.vocabulary),)
    norms = splits.train.x.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_class_words_separate_the_classes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", text_rows(90))
    plugin = _plugin(path, representation="bag_of_words", max_features=50)
    splits = plugin.load(0)
    column = plugin.encoder.vocabulary["awful"]
    has_word = splits.train.x[:, column] > 0
    assert set(splits.train.y[has_word].tolist()) == {0}  # "awful" only in class neg


def test_tokens_need_a_tokenizer_folder(corpus, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs `tokenizer`"):
        instantiate("dataset", PluginRef(name="text", params={"path": str(corpus[0])}), "dataset")
    with pytest.raises(DataError, match=r"tokenizer folder .* not found"):
        _plugin(corpus[0], tokenizer=str(tmp_path / "nope")).load(0)
    with pytest.raises(DataError, match="no column 'body'"):
        _plugin(corpus[0], tokenizer=str(corpus[1]), text_column="body").load(0)


def test_bag_of_words_trains_the_builtin_mlp(tmp_path: Path) -> None:
    """Without an embedding-based student, bag of words lets ``mlp`` learn the texts."""
    from kdforge.search_spaces.mlp import MLPSpace
    from kdforge.training.evaluate import evaluate
    from kdforge.training.trainer import TrainSettings, train_model

    path = write_jsonl(tmp_path / "t.jsonl", text_rows(150))
    splits = _plugin(path, representation="bag_of_words").load(0)
    torch.manual_seed(0)
    model = MLPSpace().build({"depth": 1, "width_0": 16}, splits.info)
    settings = TrainSettings(epochs=5, lr=0.03, batch_size=16)
    train_model(
        model, x=splits.train.x, y=splits.train.y, val_x=splits.val.x, val_y=splits.val.y,
        settings=settings,
    )  # fmt: skip
    accuracy, _ = evaluate(model, splits.test.x, splits.test.y)
    assert accuracy > 0.9


def test_transfer_file_without_a_label_column_is_unlabeled(tmp_path: Path) -> None:
    """`{split}.csv` with a text-only transfer.csv: its rows become the transfer split."""
    rows = text_rows(60)
    frame = pd.DataFrame(rows)
    frame.iloc[:40].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[40:50].to_csv(tmp_path / "val.csv", index=False)
    frame.iloc[50:].to_csv(tmp_path / "test.csv", index=False)
    transfer = pd.DataFrame({"text": [r["text"] for r in text_rows(15, seed=1)]})
    transfer.to_csv(tmp_path / "transfer.csv", index=False)
    plugin = _plugin(tmp_path / "{split}.csv", representation="bag_of_words")
    splits = plugin.load(0)
    assert splits.transfer is not None and len(splits.transfer) == 15
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 10)
    assert bool((splits.transfer.y == -1).all())

    # Any other difference is still refused, naming the file and the columns.
    transfer.assign(extra=1).to_csv(tmp_path / "transfer.csv", index=False)
    with pytest.raises(DataError, match=r"transfer.csv lacks \['label'\] and adds \['extra'\]"):
        plugin.load(0)
    frame.iloc[50:][["text"]].to_csv(tmp_path / "test.csv", index=False)
    (tmp_path / "transfer.csv").unlink()
    with pytest.raises(DataError, match=r"test.csv lacks \['label'\]") as err:
        plugin.load(0)
    assert "a transfer file may leave out the label column 'label'" in str(err.value.hint)
