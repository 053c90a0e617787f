"""The tiny-LM kit builds loadable causal and masked models from the stdlib corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdforge.testing.lm import SPECIAL_TOKENS, python_docstrings, tiny_lm, token_blocks


def test_corpus_is_fixed_and_filtered() -> None:
    first = python_docstrings(50, packages=("json",))
    assert first == python_docstrings(50, packages=("json",))
    assert first and all(len(t) >= 40 and "\n" not in t for t in first)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_tiny_lm_loads_offline_and_predicts_the_corpus(tmp_path: Path, kind: str) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    texts = python_docstrings(400, packages=("json", "csv", "string"))
    folder = tiny_lm(tmp_path, kind, texts, steps=30, vocab_size=500)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForMaskedLM
    model = auto.from_pretrained(str(folder), local_files_only=True)
    rows = token_blocks(texts, folder, 32)
    assert rows.shape[1] == 32 and rows.dtype == torch.int64
    with torch.no_grad():
        logits = model(input_ids=rows[:4]).logits
    assert logits.shape == (4, 32, len(tokenizer))
