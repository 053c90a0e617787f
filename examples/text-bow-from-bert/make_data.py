"""Write texts.jsonl and a tiny BERT teacher for the text-bow-from-bert example.

The texts are short sentences of two classes (``colour``: colour words; ``creature``:
animal words) among filler words; a few rows have no label (the transfer split). The
teacher is a 2-layer, 32-wide BERT trained from scratch here on those texts and saved
with ``save_pretrained`` (model and tokenizer) in ``kdforge-runs/tiny-bert``: kdforge
never downloads a model, so the example makes its own. Any fine-tuned local BERT folder
works the same way (point ``tokenizer`` and ``teacher.params.path`` at it).

    python examples/text-bow-from-bert/make_data.py   # needs the [hf] extra
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASSES = {
    "colour": ["red", "blue", "green", "pink", "grey", "gold"],
    "creature": ["cat", "dog", "cow", "owl", "fox", "bee"],
}
FILLERS = ["the", "a", "of", "and", "to", "in", "is", "it", "on", "at", "very", "quite"]
MAX_LENGTH = 16


def texts(rows: int, seed: int) -> list[dict]:
    """``rows`` labeled texts (seeded), classes alternating."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        label = list(CLASSES)[i % 2]
        words = rng.choices(FILLERS, k=rng.randint(4, 8)) + rng.choices(CLASSES[label], k=2)
        rng.shuffle(words)
        out.append({"text": " ".join(words), "label": label})
    return out


def train_teacher(folder: Path, rows: list[dict], epochs: int = 4) -> Path:
    """Train and save a tiny BERT classifier (label ids in sorted class-name order)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = SPECIALS + [w for names in CLASSES.values() for w in names] + FILLERS
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    names = sorted(CLASSES)  # the text dataset numbers string labels in sorted order
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    encoded = tokenizer(
        [r["text"] for r in rows], padding="max_length", max_length=MAX_LENGTH, return_tensors="pt"
    )
    labels = torch.tensor([names.index(r["label"]) for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(rows), 32):
            part = slice(start, start + 32)
            loss = model(
                input_ids=encoded["input_ids"][part],
                attention_mask=encoded["attention_mask"][part],
                labels=labels[part],
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(rows: int = 600, unlabeled: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """Write the texts beside this file and the teacher in kdforge-runs/tiny-bert."""
    data = Path(__file__).with_name("texts.jsonl")
    labeled = texts(rows, seed)
    extra = [{"text": r["text"], "label": None} for r in texts(unlabeled, seed + 1)]
    data.write_text("".join(json.dumps(r) + "\n" for r in labeled + extra))
    teacher = train_teacher(Path("kdforge-runs") / "tiny-bert", texts(512, seed + 2))
    return data, teacher


if __name__ == "__main__":
    written = main()
    print("wrote", *written)
