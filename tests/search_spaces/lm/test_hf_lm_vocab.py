"""Vocabulary trimming: kept tokens, remapped targets, the renormalised teacher, the
trainer on a trimmed student, checkpoints and the saved Hugging Face folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kdforge import build_checkpoint_model, load_checkpoint, save_checkpoint
from kdforge.config import PluginRef
from kdforge.data import VocabularyTrim
from kdforge.errors import ConfigError
from kdforge.plugin_host.resolve import instantiate
from kdforge.search_spaces.hf_lm_model import KEPT_IDS_FILE
from kdforge.training.evaluate import evaluate
from kdforge.training.trainer import TrainSettings, train_model
from tests.search_spaces.lm.conftest import VOCAB, bound_space, lm_info, lm_splits, sample_arch

PRUNED = {"layers": 2, "heads": 2, "intermediate": 64}


@pytest.fixture(scope="module")
def small_corpus(corpus: torch.Tensor) -> torch.Tensor:
    """A corpus far smaller than the tokenizer's: most tokens unseen."""
    return corpus[:40]


def test_trim_restricts_and_renormalises_the_teacher() -> None:
    trim = VocabularyTrim(torch.tensor([0, 1, 5, 9]), unk_index=1)
    teacher = torch.randn(2, 3, 12)
    restricted = trim.logits(teacher)
    probs = torch.softmax(teacher, -1)[..., [0, 1, 5, 9]]
    torch.testing.assert_close(torch.softmax(restricted, -1), probs / probs.sum(-1, keepdim=True))
    targets = torch.tensor([[9, 5, 3, -1, -2, 40]])
    assert trim.targets(targets).tolist() == [[3, 2, 1, -1, -2, 1]]


def test_corpus_vocabulary_keeps_seen_tokens_and_specials(
    gpt: Path, small_corpus: torch.Tensor
) -> None:
    splits = lm_splits(small_corpus)
    space = bound_space(gpt, splits, vocab="corpus")
    arch = sample_arch(space, {"layers": 1, "hidden": 16, "heads_h16": 2, "intermediate": 32})
    kept = json.loads(arch["_recipe"])["kept_token_ids"]
    seen = set(torch.where(splits.train.y >= 0, splits.train.y, splits.train.x).unique().tolist())
    assert set(kept) == seen | set(range(7))  # the 7 special tokens of the test tokenizer
    student = space.build(arch, lm_info())
    assert student(small_corpus[:2]).shape == (2, 16, len(kept))
    twice = bound_space(gpt, splits, vocab="corpus", min_count=2)
    assert len(twice._kept or []) < len(kept)


def test_trimming_shrinks_the_student(gpt: Path, small_corpus: torch.Tensor) -> None:
    splits = lm_splits(small_corpus)
    sizes = {}
    for vocab in ("full", "corpus"):
        space = bound_space(gpt, splits, vocab=vocab)
        arch = sample_arch(space, {"layers": 1, "hidden": 16, "heads_h16": 2, "intermediate": 32})
        sizes[vocab] = sum(p.numel() for p in space.build(arch, lm_info()).parameters())
    assert sizes["corpus"] < sizes["full"] / 2


def test_searched_vocabulary_is_a_choice(gpt: Path, small_corpus: torch.Tensor) -> None:
    space = bound_space(gpt, lm_splits(small_corpus), vocab="searched")
    base = {"layers": 1, "hidden": 16, "heads_h16": 2, "intermediate": 32}
    full = sample_arch(space, {**base, "vocab": "full"})
    corpus = sample_arch(space, {**base, "vocab": "corpus"})
    assert full["vocab_size"] == VOCAB["n"] and corpus["vocab_size"] < VOCAB["n"]


def test_a_trimmed_student_distils_through_the_trainer(
    gpt: Path, corpus: torch.Tensor, small_corpus: torch.Tensor
) -> None:
    splits = lm_splits(small_corpus)
    space = bound_space(gpt, splits, vocab="corpus", init="prune")
    student = space.build(sample_arch(space, PRUNED), lm_info())
    task = instantiate("task", PluginRef(name="language_modeling"), "task")
    loss = instantiate("loss", PluginRef(name="hinton_kd"), "loss")
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(str(gpt), local_files_only=True).eval()
    with torch.no_grad():
        teacher_logits = teacher(input_ids=splits.train.x).logits  # full vocabulary
    val_x = corpus[40:60]  # unseen text: some targets are outside the kept tokens
    val_y = torch.cat([val_x[:, 1:], torch.full((len(val_x), 1), -2)], 1)
    before, _ = evaluate(student, val_x, val_y, task)
    result = train_model(
        student,
        x=splits.train.x,
        y=splits.train.y,
        val_x=val_x,
        val_y=val_y,
        settings=TrainSettings(epochs=2, lr=3e-3, batch_size=16, seed=0),
        loss=loss,
        teacher_logits=teacher_logits,
        task=task,
    )
    after, _ = evaluate(student, val_x, val_y, task)
    assert result.best_val_acc == after and after < before  # perplexity over kept tokens


def test_checkpoint_rebuilds_a_trimmed_pruned_student(
    gpt: Path, small_corpus: torch.Tensor, tmp_path: Path
) -> None:
    space = bound_space(gpt, lm_splits(small_corpus), vocab="corpus", init="prune")
    arch = sample_arch(space, PRUNED)
    student = space.build(arch, lm_info()).eval()
    path = save_checkpoint(
        tmp_path / "student.pt", space="hf_lm", arch=arch, info=lm_info(), model=student
    )
    payload = load_checkpoint(path)  # weights_only: no pickled code
    rebuilt = build_checkpoint_model(payload, str(path))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(small_corpus[:3]), student(small_corpus[:3]))


def test_saved_folder_speaks_student_ids(
    gpt: Path, small_corpus: torch.Tensor, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    space = bound_space(gpt, lm_splits(small_corpus), vocab="corpus", init="prune")
    student = space.build(sample_arch(space, PRUNED), lm_info()).eval()
    folder = student.save_hf_folder(tmp_path / "hf")
    kept = json.loads((folder / KEPT_IDS_FILE).read_text())["kept_token_ids"]
    assert kept == student.kept_token_ids.tolist()
    original = AutoTokenizer.from_pretrained(str(gpt), local_files_only=True)
    saved = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    text = original.decode(small_corpus[0].tolist())
    ids = torch.tensor([original(text, add_special_tokens=False)["input_ids"]])
    served = torch.tensor([saved(text, add_special_tokens=False)["input_ids"]])
    assert served.tolist() == student.student_ids(ids).tolist()
    assert saved.pad_token_id == kept.index(0) and model.config.vocab_size == len(kept)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=served).logits, student(ids))
    assert student.model.config.eos_token_id == 6  # the live module keeps original ids


def test_bpe_tokenizers_are_not_trimmed(
    gpt: Path, small_corpus: torch.Tensor, tmp_path: Path
) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder = tmp_path / "bpe"
    shutil.copytree(gpt, folder)
    core = Tokenizer(models.BPE(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(
        ["a tiny corpus of words"], trainers.BpeTrainer(special_tokens=["[PAD]", "[UNK]"])
    )
    core.save(str(folder / "tokenizer.json"))
    with pytest.raises(ConfigError, match="only WordLevel and WordPiece vocabularies"):
        bound_space(folder, lm_splits(small_corpus), vocab="corpus")
    full = bound_space(gpt, lm_splits(small_corpus), vocab="corpus")
    student = full.build(
        sample_arch(full, {"layers": 1, "hidden": 16, "heads_h16": 2, "intermediate": 32}),
        lm_info(),
    )
    student.tokenizer_dir = str(folder)
    with pytest.raises(ConfigError, match="BPE"):
        student.save_hf_folder(tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_trim_refuses_teacher_outputs_it_cannot_renormalise() -> None:
    trim = VocabularyTrim(torch.tensor([0, 1, 5]), unk_index=1)
    with pytest.raises(ConfigError, match="needs the teacher's dense logits"):
        trim.logits(object())
    assert trim.logits(torch.empty(0)).numel() == 0  # an online teacher caches nothing


def test_wordpiece_tokenizers_are_trimmed_consistently(texts: list[str], tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    from kdforge.search_spaces.hf_lm_model import HuggingFaceLMStudent
    from kdforge.testing.lm import SPECIAL_TOKENS

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece()
    core.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=list(SPECIAL_TOKENS))
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]"
    )
    source = tmp_path / "wordpiece"
    tokenizer.save_pretrained(source)
    sample = "parse a json document into a python object"
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    kept = torch.tensor(sorted({*range(len(SPECIAL_TOKENS)), *ids}))
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=len(kept),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            pad_token_id=0,
        )
    )
    student = HuggingFaceLMStudent(
        model, "masked", tokenizer_dir=source, pad_token_id=0, kept_token_ids=kept, unk_index=1
    )
    folder = student.save_hf_folder(tmp_path / "out")
    saved = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert (
        saved(sample, add_special_tokens=False)["input_ids"]
        == student.student_ids(torch.tensor(ids)).tolist()
    )
    assert len(saved) == len(kept) and saved.mask_token_id == kept.tolist().index(4)


def test_a_fixed_architecture_answers_for_the_space_it_wraps(
    gpt: Path, small_corpus: torch.Tensor
) -> None:
    """student.fixed wraps the space: the host's questions (per-position outputs, causal,
    dense teacher logits) and the data reach the wrapped hf_lm space."""
    from kdforge.report.best_config import FixedArchitecture
    from kdforge.search_spaces.hf_lm import HfLMParams, HfLMSpace
    from kdforge.training.supported_tasks import require_space_outputs

    splits = lm_splits(small_corpus)
    arch = sample_arch(
        bound_space(gpt, splits, vocab="corpus"),
        {"layers": 1, "hidden": 16, "heads_h16": 2, "intermediate": 32},
    )
    inner = HfLMSpace(HfLMParams(teacher_path=str(gpt), vocab="corpus"))
    fixed = FixedArchitecture(inner, arch)
    fixed.bind_teacher(None)
    fixed.bind_data(splits)
    assert inner._kept == json.loads(arch["_recipe"])["kept_token_ids"]
    assert fixed.per_position and fixed.causal and fixed.needs_dense_teacher
    require_space_outputs(fixed, splits.info, "student space 'hf_lm'")  # no refusal
    assert fixed.build(dict(arch), lm_info())(small_corpus[:2]).shape[-1] == len(inner._kept)
