"""``kdforge.export.hf_folder``: an LM student written as a Hugging Face model folder.

Real (tiny) transformers models built from configs and a tokenizer trained here; the
MLflow and HTTP side is in tests/deploy/test_lm_serve.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kdforge.errors import ExportError
from kdforge.export.hf_folder import is_hf_lm_student, save_hf_folder

pytest.importorskip("transformers")

TEXTS = ["the json module encodes objects", "return the value of the key", "a b c d e f"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kdforge.testing.lm import build_tokenizer

    return build_tokenizer(TEXTS, tmp_path_factory.mktemp("tok"), vocab_size=64)


def _gpt2(vocab: int = 64):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=vocab, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    ).eval()


def test_untrimmed_student_is_saved_with_its_tokenizer(tokenizer_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kdforge.search_spaces.hf_lm_model import HuggingFaceLMStudent

    student = HuggingFaceLMStudent(_gpt2(), "causal", tokenizer_dir=tokenizer_dir, pad_token_id=0)
    assert is_hf_lm_student(student)
    folder = save_hf_folder(student, tmp_path / "student_hf")
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    ids = torch.tensor([[7, 8, 9, 10]])
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, student(ids), atol=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert (
        tokenizer("the json")["input_ids"]
        == AutoTokenizer.from_pretrained(str(tokenizer_dir))("the json")["input_ids"]
    )


def test_the_students_own_writer_is_used_when_it_has_one(
    tokenizer_dir: Path, tmp_path: Path
) -> None:
    calls = []

    def own(folder: Path) -> Path:
        calls.append(folder)
        student.model.save_pretrained(str(folder))
        (folder / "tokenizer_config.json").write_text("{}")
        return folder

    student = SimpleNamespace(mode="masked", model=_gpt2(), kept_token_ids=torch.arange(5))
    student.save_hf_folder = own
    assert save_hf_folder(student, tmp_path / "out") == tmp_path / "out" and calls


def test_trimmed_student_without_its_writer_is_refused(tokenizer_dir: Path, tmp_path: Path) -> None:
    student = SimpleNamespace(
        mode="causal", model=_gpt2(), kept_token_ids=torch.arange(5), tokenizer_dir=tokenizer_dir
    )
    with pytest.raises(ExportError, match="trimmed vocabulary") as caught:
        save_hf_folder(student, tmp_path / "out")
    assert caught.value.hint


def test_not_a_language_model_is_refused(tmp_path: Path) -> None:
    assert not is_hf_lm_student(torch.nn.Linear(2, 2))
    with pytest.raises(ExportError, match="not a language-model student"):
        save_hf_folder(torch.nn.Linear(2, 2), tmp_path / "out")


def test_a_writer_that_leaves_no_weights_is_refused(tmp_path: Path) -> None:
    student = SimpleNamespace(mode="causal", model=_gpt2(), save_hf_folder=lambda folder: folder)
    with pytest.raises(
        ExportError, match=r"lacks config.json, tokenizer_config.json, \*.safetensors"
    ):
        save_hf_folder(student, tmp_path / "out")
