"""Dataset ``text_corpus``: text, JSONL and saved HF datasets as language-modeling blocks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kdforge.config import PluginRef
from kdforge.errors import ConfigError, DataError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets._corpus import stdlib_docstrings
from kdforge.plugins.datasets._lm_blocks import mask_tokens
from kdforge.plugins.datasets.text_corpus import TextCorpus
from kdforge.testing import DatasetContract

pytest.importorskip("transformers")

WORDS = (
    "the", "a", "model", "teacher", "student", "learns", "from", "token", "block", "corpus",
    "text", "reads", "writes", "small", "large", "data", "file", "line", "word", "next",
    "predicts", "masked", "random", "kept", "split", "seed", "train",
)  # fmt: skip


def _documents(count: int = 80, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) for _ in range(count)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same 80 documents as two text files, a JSONL file and a saved dataset."""
    import datasets

    from kdforge.testing.lm import build_tokenizer

    folder = tmp_path_factory.mktemp("corpus")
    docs = _documents()
    (folder / "txt").mkdir()
    (folder / "txt" / "a.txt").write_text("\n\n".join(docs[:40]) + "\n")
    (folder / "txt" / "b.txt").write_text("\n\n".join(docs[40:]) + "\n")
    (folder / "lines.txt").write_text("\n".join(docs) + "\n")
    (folder / "docs.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "body": d}) for i, d in enumerate(docs)) + "\n"
    )
    datasets.disable_progress_bars()
    datasets.Dataset.from_dict({"body": docs}).save_to_disk(str(folder / "saved"))
    tokenizer = build_tokenizer(docs, folder / "tokenizer", vocab_size=100)
    other = build_tokenizer(docs[:10], folder / "other-tokenizer", vocab_size=100)
    return {"folder": folder, "docs": docs, "tokenizer": str(tokenizer), "other": str(other)}


def _load(corpus: dict[str, Any], seed: int = 0, **params: Any) -> Any:
    params = {"paths": [str(corpus["folder"] / "txt" / "*.txt")], "block_size": 16, **params}
    params.setdefault("tokenizer", corpus["tokenizer"])
    return TextCorpus(TextCorpus.Params(**params)).load(seed)


def _task(mode: str) -> Any:
    return instantiate("task", PluginRef(name="language_modeling", params={"mode": mode}), "task")


class TestTextCorpusContract(DatasetContract):
    registered_name = "text_corpus"

    @pytest.fixture
    def plugin(self, corpus: dict[str, Any]) -> TextCorpus:
        return TextCorpus(
            TextCorpus.Params(
                paths=[str(corpus["folder"] / "txt" / "*.txt")],
                tokenizer=corpus["tokenizer"],
                block_size=16,
            )
        )


def test_packed_causal_blocks_are_full_and_predict_the_next_token(corpus: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    splits = _load(corpus)
    tokenizer = AutoTokenizer.from_pretrained(corpus["tokenizer"], local_files_only=True)
    info = splits.info
    assert info.task == "language_modeling" and info.input_shape == (16,)
    assert info.input_dtype == "int64" and info.num_classes == len(tokenizer) == info.vocab_size
    assert info.pad_token_id == tokenizer.pad_token_id and info.tokenizer == str(
        Path(corpus["tokenizer"]).resolve()
    )
    x, y = splits.train.x, splits.train.y
    assert not bool((x == tokenizer.pad_token_id).any())  # packed: no padding
    assert bool((x == tokenizer.eos_token_id).any())  # documents joined by EOS
    assert torch.equal(y[:, :-1], x[:, 1:]) and bool((y[:, -1] == -2).all())
    total = sum(len(s) for s in (splits.train, splits.val, splits.test))
    tokens = sum(
        len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 1 for d in corpus["docs"]
    )
    assert total == tokens // 16  # every full block, the tail dropped
    assert len(splits.val) == round(0.1 * total) and splits.transfer is None
    _task("causal").check(splits)


def test_unpacked_blocks_pad_each_document_and_never_score_padding(corpus: dict[str, Any]) -> None:
    splits = _load(corpus, packing=False, block_size=24)
    rows = torch.cat([splits.train.x, splits.val.x, splits.test.x])
    targets = torch.cat([splits.train.y, splits.val.y, splits.test.y])
    assert len(rows) == len(corpus["docs"])  # one block per document
    pad = splits.info.pad_token_id
    padded = rows == pad
    assert bool(padded.any()) and bool((targets[padded] == -2).all())
    # Padding only at the end of a row; the position before it predicts nothing real.
    assert bool((padded[:, :-1] <= padded[:, 1:]).all())
    before_pad = torch.zeros_like(padded)
    before_pad[:, :-1] = padded[:, 1:]
    assert bool((targets[before_pad] == -2).all())
    _task("causal").check(splits)


def test_masked_blocks_follow_berts_15_80_10_10(corpus: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(corpus["tokenizer"], local_files_only=True)
    splits = _load(corpus, mode="masked", block_size=32)
    x = torch.cat([splits.train.x, splits.val.x, splits.test.x])
    y = torch.cat([splits.train.y, splits.val.y, splits.test.y])
    assert bool((x[:, 0] == tokenizer.cls_token_id).all())
    assert bool((x[:, -1] == tokenizer.sep_token_id).all())
    chosen = y >= 0
    special = torch.isin(x, torch.tensor(tokenizer.all_special_ids)) & ~chosen
    share = float(chosen.sum()) / float((~special).sum())
    assert 0.12 < share < 0.19, share
    masked = float((x[chosen] == tokenizer.mask_token_id).float().mean())
    kept = float((x[chosen] == y[chosen]).float().mean())
    assert 0.72 < masked < 0.88 and 0.04 < kept < 0.17, (masked, kept)
    assert not bool((x[~chosen] == tokenizer.mask_token_id).any())
    _task("masked").check(splits)
    with pytest.raises(DataError, match="not the next input tokens"):
        _task("causal").check(splits)  # masked targets under a causal task are refused


def test_masking_is_drawn_once_so_teacher_and_student_read_the_same_inputs(
    corpus: dict[str, Any],
) -> None:
    first = _load(corpus, mode="masked", seed=3)
    again = _load(corpus, mode="masked", seed=3)
    other = _load(corpus, mode="masked", seed=4)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(first, name).x, getattr(again, name).x)
        assert torch.equal(getattr(first, name).y, getattr(again, name).y)
    # One view: the teacher (its cache) reads exactly the student's masked inputs.
    assert not first.has_teacher_view
    assert first.for_teacher().train.x is first.train.x
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()


def test_mask_tokens_draws_exactly_the_documented_distribution() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(10, 1000, size=(400, 50))
    real = np.ones_like(ids, dtype=bool)
    real[:, 40:] = False
    inputs, targets = mask_tokens(
        ids,
        real,
        special_ids=[0, 1, 2, 3, 4],
        mask_id=4,
        vocab_size=1000,
        probability=0.15,
        rng=rng,
    )
    chosen = targets >= 0
    assert not chosen[:, 40:].any() and (targets[chosen] == ids[chosen]).all()
    assert abs(chosen[:, :40].mean() - 0.15) < 0.01
    assert abs((inputs[chosen] == 4).mean() - 0.8) < 0.03
    swapped = (inputs[chosen] != 4) & (inputs[chosen] != ids[chosen])
    assert abs(swapped.mean() - 0.1) < 0.02 and (inputs[chosen][swapped] >= 5).all()
    assert (inputs[~chosen] == ids[~chosen]).all()


def test_text_jsonl_and_saved_dataset_give_the_same_blocks(corpus: dict[str, Any]) -> None:
    folder = corpus["folder"]
    lines = _load(corpus, paths=[str(folder / "lines.txt")], text_unit="line")
    jsonl = _load(corpus, paths=[str(folder / "docs.jsonl")], field="body")
    saved = _load(corpus, paths=[str(folder / "saved")], column="body")
    paragraphs = _load(corpus)
    assert lines.fingerprint() == jsonl.fingerprint() == saved.fingerprint()
    assert paragraphs.fingerprint() == lines.fingerprint()
    whole_files = _load(corpus, text_unit="file")
    assert whole_files.fingerprint() != lines.fingerprint()  # two documents, not 80


def test_fingerprint_follows_files_tokenizer_and_params(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    base = _load(corpus).fingerprint()
    assert _load(corpus).fingerprint() == base
    assert _load(corpus, tokenizer=corpus["other"]).fingerprint() != base
    assert _load(corpus, block_size=12).fingerprint() != base
    assert _load(corpus, val_fraction=0.2).fingerprint() != base
    assert (
        _load(corpus, mode="masked").fingerprint()
        != _load(corpus, mode="masked", mask_probability=0.3).fingerprint()
    )
    edited = tmp_path / "a.txt"
    edited.write_text((corpus["folder"] / "txt" / "a.txt").read_text().replace("model", "token"))
    changed = _load(corpus, paths=[str(edited), str(corpus["folder"] / "txt" / "b.txt")])
    assert changed.fingerprint() != base


def test_caps_on_documents_and_blocks(corpus: dict[str, Any]) -> None:
    full = _load(corpus, packing=False)
    few_docs = _load(corpus, packing=False, max_documents=30)
    assert sum(len(s) for s in (few_docs.train, few_docs.val, few_docs.test)) == 30
    assert sum(len(s) for s in (full.train, full.val, full.test)) == 80
    capped = _load(corpus, max_blocks=20)
    assert sum(len(s) for s in (capped.train, capped.val, capped.test)) == 20


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"paths": ["/nonexistent/*.txt"]}, "no files matched '/nonexistent/\\*.txt'"),
        ({"tokenizer": "/nonexistent/tokenizer"}, "tokenizer folder .* not found"),
        ({"paths": ["EMPTY"]}, "the corpus is empty"),
        ({"paths": ["BAD_JSONL"], "field": "body"}, r"bad\.jsonl:3 has no field 'body'"),
        ({"max_documents": 1, "block_size": 64}, "train, val and test need at least 3"),
    ],
)
def test_bad_input_is_refused_in_one_line(
    corpus: dict[str, Any], tmp_path: Path, params: dict[str, Any], match: str
) -> None:
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    (tmp_path / "bad.jsonl").write_text('{"body": "one"}\n\n{"text": "two"}\n')
    names = {"EMPTY": str(tmp_path / "empty.txt"), "BAD_JSONL": str(tmp_path / "bad.jsonl")}
    if "paths" in params:
        params = {**params, "paths": [names.get(p, p) for p in params["paths"]]}
    with pytest.raises(DataError, match=match) as err:
        _load(corpus, **params)
    assert "\n" not in str(err.value)


def test_block_size_below_two_is_a_config_error(corpus: dict[str, Any]) -> None:
    ref = PluginRef(name="text_corpus", params={"tokenizer": corpus["tokenizer"], "block_size": 1})
    with pytest.raises(ConfigError, match="block_size 1 is too short"):
        instantiate("dataset", ref, "dataset")


def test_python_stdlib_source_needs_no_files(corpus: dict[str, Any]) -> None:
    from kdforge.testing.lm import python_docstrings

    # The plugin reads the same corpus as the test kit (the layers keep two copies).
    assert list(stdlib_docstrings(["json"])) == python_docstrings(packages=("json",))
    splits = TextCorpus(
        TextCorpus.Params(
            source="python_stdlib",
            stdlib_packages=["json"],
            tokenizer=corpus["tokenizer"],
            block_size=16,
            max_documents=12,
        )
    ).load(0)
    assert splits.info.name == "python_stdlib" and len(splits.train) > 0
    assert next(stdlib_docstrings(["json"])).startswith("JSON")
