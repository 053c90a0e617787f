"""Small, learnable datasets of every kind, written into a temporary folder.

Each builder writes files the way a user would have them on disk (PNG images in class
folders, a CSV/Parquet table, a JSONL of texts, an .npz, a saved Hugging Face dataset)
and returns the path to point the dataset plugin at. Classes are easy to tell apart,
so a tiny teacher and student learn them in a few epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = {
    "neg": ["awful", "bad", "boring", "broken", "poor", "sad"],
    "pos": ["great", "good", "lovely", "fun", "superb", "happy"],
    "neutral": ["table", "chair", "paper", "window", "blue", "street"],
}
FILLER = ["the", "a", "it", "was", "and", "very", "this", "movie"]


def _pattern(label: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy RGB image whose bright region depends on the class."""
    image = rng.uniform(0, 60, size=(height, width, 3))
    if label == 0:
        image[: height // 2, :, 0] += 180  # red top half
    elif label == 1:
        image[:, : width // 2, 1] += 180  # green left half
    else:
        image[height // 2 :, width // 2 :, 2] += 180  # blue bottom-right corner
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image_folder(
    root: Path,
    *,
    per_class: int = 12,
    split_layout: bool = False,
    transfer: int = 0,
    seed: int = 0,
) -> Path:
    """PNG images of 3 classes in class folders (or train/val/test/transfer folders).

    Sizes vary (resize is needed) and some images are grayscale or RGBA (conversion is
    needed).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    classes = ["circle", "square", "stripes"]
    modes = ["RGB", "RGB", "L", "RGBA"]
    for label, name in enumerate(classes):
        for i in range(per_class):
            if split_layout:
                split = "train" if i < per_class * 0.6 else "val" if i < per_class * 0.8 else "test"
                folder = root / split / name
            else:
                folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            height, width = (12, 12) if i % 3 else (16, 10)
            image = Image.fromarray(_pattern(label, height, width, rng)).convert(modes[i % 4])
            image.save(folder / f"{name}_{i:03d}.png")
    if transfer:
        folder = root / "transfer" if split_layout else root.parent / f"{root.name}-unlabeled"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(transfer):
            Image.fromarray(_pattern(i % 3, 12, 12, rng)).save(folder / f"u{i:03d}.png")
        return root if split_layout else folder
    return root


def table_rows(n: int = 150, seed: int = 0) -> list[dict]:
    """Rows of a 3-class table: two numeric features, one categorical, some gaps."""
    rng = np.random.default_rng(seed)
    colors = ["red", "green", "blue"]
    rows = []
    for i in range(n):
        label = i % 3
        rows.append(
            {
                "length": float(rng.normal(label * 3.0, 0.6)),
                "width": float(rng.normal(10.0 - label * 2.0, 0.6)) if i % 17 else None,
                "color": colors[label] if rng.uniform() < 0.85 else colors[(label + 1) % 3],
                "species": ["setosa", "versicolor", "virginica"][label],
            }
        )
    return rows


def write_table(path: Path, *, n: int = 150, seed: int = 0) -> Path:
    """A CSV or Parquet file (by suffix) of :func:`table_rows`."""
    import pandas as pd

    frame = pd.DataFrame(table_rows(n, seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def text_rows(n: int = 90, seed: int = 0, unlabeled: int = 0) -> list[dict]:
    """Short texts of 3 classes, each with two class words among filler words."""
    rng = np.random.default_rng(seed)
    names = list(WORDS)
    rows = []
    for i in range(n + unlabeled):
        label = names[i % 3]
        words = list(rng.choice(FILLER, 4)) + list(rng.choice(WORDS[label], 2))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label if i < n else None})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """One JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_tokenizer(folder: Path, texts: list[str]) -> Path:
    """A word-level tokenizer trained on ``texts``, saved like a Hugging Face model's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    fast.save_pretrained(str(folder))
    return folder


def blobs(n: int = 150, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of 3 classes: float32 inputs ``(n, dim)``, int64 labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = rng.normal(0, 3, size=(3, dim))
    x = centers[y] + rng.normal(0, 1.0, size=(n, dim))
    return x.astype(np.float32), y.astype(np.int64)


def write_npz(path: Path, *, n: int = 150, dim: int = 6, seed: int = 0) -> Path:
    """An .npz with arrays ``x`` and ``y``."""
    x, y = blobs(n, dim, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)
    return path


def write_hf_dataset(folder: Path, *, n: int = 120, dim: int = 6, seed: int = 0) -> Path:
    """A DatasetDict (train/validation/test) of float vectors with a ClassLabel."""
    import datasets

    x, y = blobs(n, dim, seed)
    features = datasets.Features(
        {
            "features": datasets.List(datasets.Value("float32")),
            "label": datasets.ClassLabel(names=["a", "b", "c"]),
        }
    )
    parts = {"train": slice(0, 80), "validation": slice(80, 100), "test": slice(100, n)}
    saved = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"features": x[s].tolist(), "label": y[s].tolist()}, features=features
            )
            for name, s in parts.items()
        }
    )
    datasets.disable_progress_bars()
    saved.save_to_disk(str(folder))
    return folder
