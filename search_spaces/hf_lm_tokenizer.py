"""Saving a tokenizer for a student with a trimmed vocabulary.

A trimmed student knows only some of the tokenizer's tokens (entry ``i`` is original id
``kept[i]``). For its saved folder to be self-consistent, the tokenizer must produce
student entries: word-level and WordPiece tokenizers are a plain ``token -> id`` table,
so the table is cut to the kept tokens and renumbered (unkept words then read as the
unknown token, exactly as the student's id map treats them). BPE and unigram
tokenizers build words from merges or scored pieces that may need unkept tokens, so
they are refused rather than saved inconsistent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdforge.errors import ConfigError

__all__ = ["TRIMMABLE_MODELS", "save_trimmed_tokenizer", "tokenizer_model_type"]

#: ``tokenizer.json`` model types whose vocabulary is a plain table that can be cut.
TRIMMABLE_MODELS = ("WordLevel", "WordPiece")


def tokenizer_model_type(tokenizer_dir: str | Path) -> str | None:
    """The ``model.type`` of the folder's ``tokenizer.json`` (None without one)."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    return str(json.loads(path.read_text(encoding="utf-8"))["model"].get("type"))


def save_trimmed_tokenizer(
    tokenizer_dir: str | Path, folder: str | Path, kept: Sequence[int] | None
) -> None:
    """Save the tokenizer of ``tokenizer_dir`` into ``folder``, cut to ``kept`` ids.

    Args:
        tokenizer_dir: A Hugging Face tokenizer folder (with ``tokenizer.json``).
        folder: The destination (exists).
        kept: Original ids of the student's entries, in entry order; None saves the
            tokenizer unchanged.

    Raises:
        ConfigError: ``kept`` is given and the tokenizer is not word-level or
            WordPiece, or has no ``tokenizer.json``, or a special token is not kept.
    """
    # transformers is the optional [hf] extra; only LM students need it.
    from transformers import AutoTokenizer

    kind = tokenizer_model_type(tokenizer_dir)
    if kept is not None and kind not in TRIMMABLE_MODELS:
        raise ConfigError(
            f"vocabulary trimming: tokenizer {tokenizer_dir} is {kind or 'not a fast tokenizer'}"
            f", and only {' and '.join(TRIMMABLE_MODELS)} vocabularies can be cut to the kept "
            "tokens (BPE merges and unigram pieces would need tokens the student lacks)",
            hint="set student.params.vocab: full for this tokenizer",
        )
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    tokenizer.save_pretrained(str(folder))
    if kept is None:
        return
    path = Path(folder) / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    position = {original: i for i, original in enumerate(kept)}
    vocab: dict[str, int] = data["model"]["vocab"]
    data["model"]["vocab"] = {
        token: position[i]
        for token, i in sorted(vocab.items(), key=lambda kv: kv[1])
        if i in position
    }
    lost = [t["content"] for t in data.get("added_tokens", []) if t["id"] not in position]
    if lost:
        raise ConfigError(
            f"vocabulary trimming: special token(s) {lost} of {tokenizer_dir} are not kept",
            hint="keep every special token (the corpus vocabulary always does)",
        )
    for token in data.get("added_tokens", []):
        token["id"] = position[token["id"]]
    _renumber_post_processor(data.get("post_processor"), position)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config_path = Path(folder) / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        decoder = config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            config["added_tokens_decoder"] = {
                str(position[int(k)]): v for k, v in decoder.items() if int(k) in position
            }
            config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _renumber_post_processor(node: Any, position: dict[int, int]) -> None:
    """Special-token ids inside a post-processor (BERT's ``[CLS] ... [SEP]``) renumbered."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                node[key] = [position.get(int(v), int(v)) for v in value]
            elif key in ("cls", "sep") and isinstance(value, list) and len(value) == 2:
                value[1] = position.get(int(value[1]), int(value[1]))
            else:
                _renumber_post_processor(value, position)
    elif isinstance(node, list):
        for item in node:
            _renumber_post_processor(item, position)
