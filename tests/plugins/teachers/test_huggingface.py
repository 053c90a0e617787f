"""The ``huggingface`` teacher: a tiny BERT saved locally, used offline and distilled."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest
import torch

from kdforge.errors import CheckpointError
from kdforge.plugins.teachers.huggingface import HuggingFaceTeacher
from kdforge.testing import TeacherContract

pytest.importorskip("transformers")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASS_WORDS = (["red", "blue", "green", "pink"], ["cat", "dog", "cow", "owl"])
FILLERS = ["the", "a", "of", "and", "to", "in", "is", "it", "on", "at"]
MAX_LENGTH = 16


def _texts(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.choices(FILLERS, k=rng.randint(4, 8)) + rng.choices(CLASS_WORDS[label], k=2)
        rng.shuffle(words)
        # String labels are numbered in sorted order by the text dataset: colour=0, creature=1.
        rows.append((" ".join(words), ["colour", "creature"][label]))
    return rows


def _build_teacher(folder: Path) -> Path:
    """Train a 2-layer, 32-wide BERT on the synthetic texts and save it with its tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = SPECIALS + CLASS_WORDS[0] + CLASS_WORDS[1] + FILLERS
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    rows = _texts(256, seed=1)
    encoded = tokenizer(
        [t for t, _ in rows], padding="max_length", max_length=MAX_LENGTH, return_tensors="pt"
    )
    labels = torch.tensor([0 if y == "colour" else 1 for _, y in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(4):
        for start in range(0, len(rows), 32):
            part = slice(start, start + 32)
            out = model(
                input_ids=encoded["input_ids"][part],
                attention_mask=encoded["attention_mask"][part],
                labels=labels[part],
            )
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_teacher(tmp_path_factory.mktemp("tiny-bert"))


def _loaded(path: Path, **params) -> HuggingFaceTeacher:
    teacher = HuggingFaceTeacher(HuggingFaceTeacher.Params(path=str(path), **params))
    teacher.load()
    return teacher


def _ids(hf_dir: Path, texts: list[str]) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    batch = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt")
    return batch["input_ids"]


class TestHuggingFaceContract(TeacherContract):
    registered_name = "huggingface"
    input_shape = (MAX_LENGTH,)
    input_dtype = "int64"
    vocab_size = 20

    @pytest.fixture
    def plugin(self, hf_dir: Path) -> HuggingFaceTeacher:
        return HuggingFaceTeacher(HuggingFaceTeacher.Params(path=str(hf_dir)))


def test_logits_pooled_and_hidden_states(hf_dir: Path) -> None:
    teacher = _loaded(hf_dir, hidden_states=True)
    rows = _texts(40, seed=7)
    out = teacher.predict(_ids(hf_dir, [t for t, _ in rows]))
    labels = torch.tensor([0 if y == "colour" else 1 for _, y in rows])
    assert out.logits is not None and out.logits.shape == (40, 2)
    assert float((out.logits.argmax(-1) == labels).float().mean()) > 0.9  # a real teacher
    assert out.features["pooled"].shape == (40, 32)
    assert [f"hidden_{i}" for i in range(3)] == [k for k in out.features if k.startswith("hidden")]
    assert out.features["hidden_2"].shape == (40, MAX_LENGTH, 32)
    assert teacher.expected_num_classes() == 2 and teacher.tokenizer_path == str(hf_dir.resolve())


def test_encoder_gives_embeddings_only_and_mean_pooling_ignores_padding(hf_dir: Path) -> None:
    teacher = _loaded(hf_dir, task="encoder", pooling="mean")
    ids = _ids(hf_dir, ["the red cat", "a blue dog is"])
    out = teacher.predict(ids)
    assert out.logits is None and teacher.expected_num_classes() is None
    shorter = torch.cat([ids[:, :8], torch.zeros(2, 0, dtype=torch.long)], dim=1)
    # Same tokens with less padding: masked mean pooling gives the same embedding.
    again = teacher.predict(shorter).features["pooled"]
    torch.testing.assert_close(again, out.features["pooled"], rtol=1e-4, atol=1e-5)


def test_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(CheckpointError, match="never downloads"):
        _loaded(Path("bert-base-uncased"))
    with pytest.raises(CheckpointError, match="never downloads"):
        _loaded(tmp_path)
    assert "HF_HUB_OFFLINE" not in os.environ  # restored after loading


def test_fingerprint_follows_files_and_params(hf_dir: Path, tmp_path: Path) -> None:
    import shutil

    base = _loaded(hf_dir).fingerprint()
    assert _loaded(hf_dir, pooling="mean").fingerprint() != base
    copy = shutil.copytree(hf_dir, tmp_path / "copy")
    assert _loaded(copy).fingerprint() == base  # content, not location
    config = (copy / "config.json").read_text()
    (copy / "config.json").write_text(config.replace('"hidden_act"', '"extra": 1, "hidden_act"'))
    assert _loaded(copy).fingerprint() != base


@pytest.mark.slow
def test_distil_a_tiny_bert_into_a_small_transformer(
    hf_dir: Path, tmp_path: Path, ray_session
) -> None:
    from kdforge.config import SearchConfig
    from kdforge.search.driver import run_search

    data = tmp_path / "texts.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(_texts(300, seed=3))
    teacher = HuggingFaceTeacher(HuggingFaceTeacher.Params(path=str(hf_dir)))
    config = SearchConfig.model_validate(
        {
            "name": "hf-tiny",
            "output_dir": str(tmp_path / "runs"),
            # The text dataset tokenizes with the teacher's tokenizer.
            "dataset": {
                "name": "text",
                "params": {
                    "path": str(data),
                    "tokenizer": teacher.tokenizer_path,
                    "max_length": MAX_LENGTH,
                },
            },
            "teacher": {"name": "huggingface", "params": {"path": str(hf_dir)}},
            "student": {
                "name": "transformer",
                "params": {
                    "max_layers": 1,
                    "hidden_sizes": [16],
                    "heads": [2],
                    "min_ffn": 16,
                    "max_ffn": 32,
                },
            },
            "search": {
                "num_trials": 2,
                "epochs": 3,
                "grace_period": 1,
                "lr": {"low": 3e-3, "high": 1e-2, "log": True},
            },
            "baseline": {"enabled": False},
            "export": {"enabled": False},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        }
    )
    lines: list[str] = []
    result = run_search(config, emit=lines.append)
    summary = result.summary
    assert result.best is not None
    assert summary["teacher_test_acc"] > 0.9 and summary["teacher_forward_calls"] > 0
    assert summary["student_params"] * 5 < summary["teacher_params"]
    assert result.best.val_acc is not None and result.best.val_acc > 0.7
