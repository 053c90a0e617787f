"""A tiny tagging corpus, its WordPiece tokenizer and a tiny BERT tagger, built offline.

Tags: ``NUM`` for a number, ``CAP`` for a capitalised word, ``O`` otherwise. Some words
are two sub-tokens (``Paris`` = ``Par ##is``, ``playing`` = ``play ##ing``), so the
first-sub-token rule is exercised.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LOWER = ["the", "a", "of", "and", "to", "in", "is", "it", "on", "at", "play", "##ing", "##ed"]
CAPITAL = ["Alice", "Bob", "Rome", "Par", "##is"]
NUMBERS = ["7", "12", "42", "3"]
VOCAB = SPECIALS + LOWER + CAPITAL + NUMBERS
WORDS = {
    "O": ["the", "a", "of", "and", "to", "in", "is", "it", "on", "at", "playing", "played"],
    "CAP": ["Alice", "Bob", "Rome", "Paris"],
    "NUM": NUMBERS,
}
MAX_LENGTH = 16


def sentences(n: int, seed: int) -> list[dict[str, list[str]]]:
    """``n`` rows ``{"tokens": [...], "tags": [...]}`` of 3 to 8 words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tags = rng.choices(["O", "O", "CAP", "NUM"], k=rng.randint(3, 8))
        rows.append({"tokens": [rng.choice(WORDS[t]) for t in tags], "tags": tags})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, list[str]]]) -> Path:
    """Write rows as JSON Lines."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def slow_tokenizer() -> Any:
    """A case-keeping WordPiece tokenizer over :data:`VOCAB` (the slow Python one)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=False)


def save_tokenizer(folder: Path) -> Path:
    """Save the tokenizer to ``folder`` (AutoTokenizer loads it back as a fast one)."""
    slow_tokenizer().save_pretrained(folder)
    return folder


def build_tagger(folder: Path, steps: int = 120) -> Path:
    """Train a 1-layer, 32-wide BertForTokenClassification on the corpus; save it."""
    from transformers import BertConfig, BertForTokenClassification

    from kdforge.plugins.datasets._text import encode_tagged_words

    tokenizer = slow_tokenizer()
    names = sorted(WORDS)  # the text dataset numbers string tags in sorted order
    rows = sentences(400, seed=11)
    ids, targets = encode_tagged_words(
        tokenizer,
        [r["tokens"] for r in rows],
        [[names.index(t) for t in r["tags"]] for r in rows],
        MAX_LENGTH,
    )
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        num_labels=len(names),
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    labels = targets.clamp_min(-100).masked_fill(targets < 0, -100)
    model.train()
    for step in range(steps):
        part = slice((step * 32) % len(rows), (step * 32) % len(rows) + 32)
        out = model(
            input_ids=ids[part], attention_mask=(ids[part] != 0).long(), labels=labels[part]
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
