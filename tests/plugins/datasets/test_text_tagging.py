"""Token tagging from JSON Lines: first-sub-token alignment, splits, the transformer head."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.data import NOT_A_WORD, UNLABELED
from kdforge.errors import ConfigError, DataError
from kdforge.plugins.datasets._text import encode_tagged_words, load_tokenizer
from kdforge.plugins.datasets.text import TextDataset
from kdforge.plugins.tasks.token_classification import TokenClassification
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.transformer import TransformerSpace
from kdforge.training.supported_tasks import require_space_outputs
from tests.plugins.datasets import tagging

pytest.importorskip("transformers")


def _dataset(path: Path, tokenizer: Path, **extra: object) -> TextDataset:
    params = {
        "path": str(path),
        "tokenizer": str(tokenizer),
        "text_column": "tokens",
        "tags_column": "tags",
        "max_length": tagging.MAX_LENGTH,
        **extra,
    }
    return TextDataset(TextDataset.Params.model_validate(params))


def test_first_sub_token_rule_fast_and_slow(tmp_path: Path) -> None:
    fast = load_tokenizer(str(tagging.save_tokenizer(tmp_path / "tok")), "test")
    assert fast.is_fast
    slow = tagging.slow_tokenizer()
    words = [["Alice", "playing", "in", "Paris"], ["7", "played"]]
    tags = [[0, 1, 1, 0], [2, UNLABELED]]
    for tokenizer in (fast, slow):
        ids, targets = encode_tagged_words(tokenizer, words, tags, 8)
        pieces = tokenizer.convert_ids_to_tokens(ids[0].tolist())
        assert pieces == ["[CLS]", "Alice", "play", "##ing", "in", "Par", "##is", "[SEP]"]
        assert targets[0].tolist() == [-2, 0, 1, -2, 1, 0, -2, -2]
        # Padding and specials are -2; an unknown tag stays -1 at the word's first piece.
        assert targets[1].tolist() == [-2, 2, -1, -2, -2, -2, -2, -2]
        assert tokenizer.convert_ids_to_tokens(ids[1, :5].tolist()) == [
            "[CLS]",
            "7",
            "play",
            "##ed",
            "[SEP]",
        ]
        # Truncation keeps the [SEP] and drops the cut words' tags.
        ids, targets = encode_tagged_words(tokenizer, words[:1], tags[:1], 5)
        assert tokenizer.convert_ids_to_tokens(ids[0].tolist())[-1] == "[SEP]"
        assert targets[0].tolist() == [-2, 0, 1, -2, -2]


def test_text_dataset_loads_tags_for_the_task(tmp_path: Path) -> None:
    rows = tagging.sentences(60, seed=0)
    rows.append({"tokens": ["the", "Bob"], "tags": None})  # an untagged row: transfer
    path = tagging.write_jsonl(tmp_path / "tags.jsonl", rows)
    tokenizer = tagging.save_tokenizer(tmp_path / "tok")
    splits = _dataset(path, tokenizer).load(seed=0)
    info = splits.info
    assert info.task == "token_classification" and info.per_position
    assert info.class_names == ("CAP", "NUM", "O") and info.num_classes == 3
    assert info.input_shape == (tagging.MAX_LENGTH,) and info.input_dtype == "int64"
    task = TokenClassification()
    task.check(splits)
    assert splits.transfer is not None and len(splits.transfer) == 1
    assert not bool(task.labeled(splits.transfer.y).any())
    assert int((splits.transfer.y == UNLABELED).sum()) == 2  # two words, tags unknown
    total = sum(len(s) for s in (splits.train, splits.val, splits.test))
    assert total == 60
    # Every tag sits on a word's first sub-token; padding positions are -2.
    for split in (splits.train, splits.val, splits.test):
        assert bool((split.y[split.x == info.pad_token_id] == NOT_A_WORD).all())
        assert bool(task.labeled(split.y).all())


def test_mismatched_tags_are_refused(tmp_path: Path) -> None:
    rows = tagging.sentences(20, seed=0)
    rows[4]["tags"] = rows[4]["tags"][:-1]
    path = tagging.write_jsonl(tmp_path / "tags.jsonl", rows)
    with pytest.raises(DataError, match="row 5"):
        _dataset(path, tagging.save_tokenizer(tmp_path / "tok")).load(seed=0)
    with pytest.raises(ValueError, match="representation"):
        _dataset(path, tmp_path, representation="bag_of_words")


def test_transformer_head_gives_logits_per_position(tmp_path: Path) -> None:
    path = tagging.write_jsonl(tmp_path / "tags.jsonl", tagging.sentences(40, seed=1))
    splits = _dataset(path, tagging.save_tokenizer(tmp_path / "tok")).load(seed=0)
    space = TransformerSpace()
    arch = {"layers": 1, "hidden": 16, "heads": 2, "ffn": 16}
    model = space.build(arch, splits.info).eval()
    x = splits.val.x[:3]
    out = model(x)
    assert tuple(out.shape) == (3, tagging.MAX_LENGTH, 3)
    # Per-position data: a space that pools to one row per example is refused, by name.
    with pytest.raises(ConfigError, match="one output row per input position"):
        require_space_outputs(MLPSpace(), splits.info, "student space 'mlp'")
    require_space_outputs(space, splits.info, "student space 'transformer'")
