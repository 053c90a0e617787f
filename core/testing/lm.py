"""Tiny language models and a corpus for tests: no downloads, built in seconds.

* :func:`python_docstrings`: a text corpus read from the installed Python standard
  library's source (the docstrings of its modules, classes and functions), parsed with
  :mod:`ast` (nothing is imported), in a fixed order;
* :func:`build_tokenizer`: a word-level tokenizer trained on texts, saved as a Hugging
  Face fast tokenizer folder with the special tokens BERT and GPT-2 style models need;
* :func:`tiny_lm`: a small causal (GPT-2) or masked (BERT) language model built from a
  config, trained a few steps on the texts, saved with its tokenizer (a folder that the
  ``huggingface`` teacher loads with ``local_files_only``).

Needs the ``[hf]`` extra (transformers, tokenizers) besides the test kit's.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

# transformers and tokenizers belong to the optional [hf] extra: imported inside the
# builders, so that importing the kit for the corpus alone needs neither.

__all__ = ["SPECIAL_TOKENS", "build_tokenizer", "python_docstrings", "tiny_lm", "token_blocks"]

#: Special tokens of :func:`build_tokenizer`, in id order (``[PAD]`` is id 0).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]")


def python_docstrings(
    limit: int | None = None, *, min_chars: int = 40, packages: Sequence[str] = ()
) -> list[str]:
    """Docstrings of the installed standard library, in a fixed order.

    Args:
        limit: Keep at most this many (the first in path order).
        min_chars: Skip docstrings shorter than this.
        packages: Only files under these top-level names (e.g. ``("json", "email")``);
            all of the standard library when empty.

    Returns:
        One string per docstring, whitespace collapsed.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py")) + sorted(root.glob("*/**/*.py"))
    texts: list[str] = []
    for file in files:
        top = file.relative_to(root).parts[0].removesuffix(".py")
        if (packages and top not in packages) or top in {"test", "idlelib", "site-packages"}:
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree] + [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                texts.append(" ".join(doc.split()))
                if limit is not None and len(texts) >= limit:
                    return texts
    return texts


def build_tokenizer(texts: Sequence[str], folder: str | Path, *, vocab_size: int = 2000) -> Path:
    """Train a word-level tokenizer on ``texts`` and save it to ``folder``.

    Words and punctuation are split apart and lower-cased; the ``vocab_size`` most
    frequent (specials included) are kept, the rest read as ``[UNK]``.

    Returns:
        ``folder`` (``AutoTokenizer.from_pretrained(folder)`` loads it).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=1
    )
    core.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return folder


def token_blocks(texts: Sequence[str], tokenizer_dir: str | Path, block: int) -> torch.Tensor:
    """The texts tokenized, joined by ``[EOS]`` and cut into ``(n, block)`` int64 rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    rows = len(ids) // block
    return torch.tensor(ids[: rows * block], dtype=torch.int64).reshape(rows, block)


def tiny_lm(
    folder: str | Path,
    kind: Literal["causal", "masked"],
    texts: Sequence[str],
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    block: int = 32,
    steps: int = 60,
    vocab_size: int = 2000,
    seed: int = 0,
) -> Path:
    """Build, briefly train and save a GPT-2 (``causal``) or BERT (``masked``) model.

    The tokenizer is trained on ``texts`` (:func:`build_tokenizer`) and saved beside the
    model; training is ``steps`` AdamW steps of batch 16 over ``block``-token rows of
    the texts (masked: BERT's 15% with 80/10/10).

    Returns:
        ``folder``, holding ``config.json``, ``model.safetensors`` and the tokenizer.
    """
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForMaskedLM,
        GPT2Config,
        GPT2LMHeadModel,
    )

    folder = Path(folder)
    build_tokenizer(texts, folder, vocab_size=vocab_size)
    data = token_blocks(texts, folder, block)
    vocab = len(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
    torch.manual_seed(seed)
    model: torch.nn.Module
    if kind == "causal":
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=vocab,
                n_positions=block,
                n_embd=hidden,
                n_layer=layers,
                n_head=heads,
                bos_token_id=SPECIAL_TOKENS.index("[BOS]"),
                eos_token_id=SPECIAL_TOKENS.index("[EOS]"),
                pad_token_id=0,
            )
        )
    else:
        model = BertForMaskedLM(
            BertConfig(
                vocab_size=vocab,
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                intermediate_size=4 * hidden,
                max_position_embeddings=block,
                pad_token_id=0,
            )
        )
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (16,), generator=generator)]
        if kind == "causal":
            out = model(input_ids=batch, labels=batch)
        else:
            inputs, labels = _mask(batch, vocab, generator)
            out = model(input_ids=inputs, labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)
    return folder


def _mask(
    batch: torch.Tensor, vocab: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: 15% of positions; of those 80% [MASK], 10% random, 10% kept."""
    chosen = torch.rand(batch.shape, generator=generator) < 0.15
    labels = torch.where(chosen, batch, torch.full_like(batch, -100))
    roll = torch.rand(batch.shape, generator=generator)
    inputs = batch.clone()
    inputs[chosen & (roll < 0.8)] = SPECIAL_TOKENS.index("[MASK]")
    random = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[random] = torch.randint(len(SPECIAL_TOKENS), vocab, batch.shape, generator=generator)[
        random
    ]
    return inputs, labels
