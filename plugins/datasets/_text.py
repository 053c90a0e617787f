"""Turning texts into model inputs: token ids, or a bag-of-words vector.

Shared by the ``text`` and ``hf_disk`` datasets.

* ``representation: tokens`` (default) tokenises with a local Hugging Face tokenizer
  directory (the teacher's model folder holds its tokenizer), padded and truncated to
  ``max_length``: int64 inputs ``(max_length,)`` for embedding-based students and
  teachers (``DataInfo.vocab_size`` and ``pad_token_id`` are set). Needs the ``[hf]``
  extra (``transformers``); nothing is ever downloaded.
* ``representation: bag_of_words`` gives float32 vectors, one entry per vocabulary
  word: TF-IDF weights (``log1p`` counts, L2-normalised) of the (at most
  ``max_features``) most frequent tokens of the training split, so the built-in
  ``mlp`` space (and its ONNX export) work on text. Tokens come from the tokenizer
  when one is given, else from a lower-cased ``\\w+`` split.

``teacher_representation`` gives the teacher its own view of the same rows
(``Split.teacher_x``): e.g. ``representation: bag_of_words`` for an ``mlp`` student
and ``teacher_representation: tokens`` for a Hugging Face teacher, both from one
``tokenizer`` folder. Default: the teacher reads the student's view.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from kdforge.data import NOT_A_WORD
from kdforge.errors import DataError
from kdforge.interfaces import PluginParams

# transformers belongs to the optional [hf] extra: imported only when text is tokenised.

__all__ = [
    "TextEncoder",
    "TextParams",
    "encode_tagged_words",
    "load_tokenizer",
    "teacher_encoder",
    "teacher_info_fields",
]

_WORD = re.compile(r"\w+", re.UNICODE)


class TextParams(PluginParams):
    """How texts become inputs."""

    tokenizer: str | None = Field(
        None,
        description="Local tokenizer folder (e.g. the teacher's Hugging Face model folder).",
    )
    representation: Literal["tokens", "bag_of_words"] = Field(
        "tokens", description="tokens: int64 token ids; bag_of_words: float TF-IDF vectors."
    )
    max_length: int = Field(128, ge=1, description="tokens: pad/truncate to this many ids.")
    max_features: int = Field(
        2000, ge=1, description="bag_of_words: vocabulary size (most frequent training tokens)."
    )
    lowercase: bool = Field(True, description="bag_of_words without tokenizer: lower-case words.")
    teacher_representation: Literal["tokens", "bag_of_words"] | None = Field(
        None,
        description="The teacher's own view of the rows (default: the student's "
        "representation), e.g. tokens for a Hugging Face teacher of a bag_of_words student.",
    )

    @model_validator(mode="after")
    def _tokens_need_tokenizer(self) -> TextParams:
        if self.representation == "tokens" and not self.tokenizer:
            raise ValueError(
                "representation 'tokens' needs `tokenizer` (a local tokenizer folder, e.g. "
                "the teacher's model folder); or use representation: bag_of_words"
            )
        if self.teacher_representation == "tokens" and not self.tokenizer:
            raise ValueError(
                "teacher_representation 'tokens' needs `tokenizer` (the teacher's model "
                "folder, which holds its tokenizer)"
            )
        return self


def load_tokenizer(path: str, where: str) -> Any:
    """Load a tokenizer from a local folder, never from the network.

    Raises:
        DataError: transformers missing, folder missing, or no tokenizer in it.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{where}: tokenizer folder {folder} not found",
            hint="point `tokenizer` at a saved tokenizer (e.g. the teacher's model folder)",
        )
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise DataError(
            f"{where}: the tokenizer needs the `transformers` package",
            hint="pip install 'kdforge[hf]'",
        ) from None
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{where}: cannot load a tokenizer from {folder}: {exc}") from None


class TextEncoder:
    """Encodes texts as token ids or bag-of-words vectors (vocabulary fitted on train)."""

    def __init__(self, params: TextParams, where: str) -> None:
        self.params = params
        self.where = where
        self.tokenizer: Any = load_tokenizer(params.tokenizer, where) if params.tokenizer else None
        self.vocabulary: dict[str, int] = {}
        self.idf: np.ndarray = np.zeros(0, dtype=np.float32)
        if not self.bag_of_words and getattr(self.tokenizer, "pad_token_id", None) is None:
            raise DataError(
                f"{where}: tokenizer {params.tokenizer} has no padding token",
                hint="save the tokenizer with a pad_token (e.g. tokenizer.pad_token = '[PAD]')",
            )

    @property
    def bag_of_words(self) -> bool:
        """True for the bag-of-words representation."""
        return self.params.representation == "bag_of_words"

    def fit(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> TextEncoder:
        """Choose the bag-of-words vocabulary and IDF weights from training texts."""
        if not self.bag_of_words:
            return self
        docs = self._words(texts, pairs)
        frequency = Counter(word for doc in docs for word in set(doc))
        ranked = sorted(frequency, key=lambda w: (-frequency[w], w))[: self.params.max_features]
        self.vocabulary = {word: i for i, word in enumerate(ranked)}
        n = len(docs)
        self.idf = np.array(
            [math.log((1 + n) / (1 + frequency[w])) + 1.0 for w in ranked], dtype=np.float32
        )
        return self

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one encoded text."""
        return (len(self.vocabulary),) if self.bag_of_words else (self.params.max_length,)

    def info_fields(self) -> dict[str, Any]:
        """``DataInfo`` fields describing the encoded inputs."""
        if self.bag_of_words:
            return {"input_shape": self.input_shape, "input_dtype": "float32"}
        return {
            "input_shape": self.input_shape,
            "input_dtype": "int64",
            "vocab_size": len(self.tokenizer),
            "pad_token_id": int(self.tokenizer.pad_token_id),
            "tokenizer": str(Path(str(self.params.tokenizer)).expanduser().resolve()),
        }

    def transform(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> torch.Tensor:
        """Encode texts: int64 ``(n, max_length)`` ids or float32 ``(n, vocabulary size)``."""
        if not self.bag_of_words:
            encoded = self.tokenizer(
                list(texts),
                text_pair=list(pairs) if pairs is not None else None,
                padding="max_length",
                truncation=True,
                max_length=self.params.max_length,
                return_tensors="np",
            )
            return torch.from_numpy(np.asarray(encoded["input_ids"], dtype=np.int64))
        out = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for row, doc in enumerate(self._words(texts, pairs)):
            counts = Counter(w for w in doc if w in self.vocabulary)
            for word, count in counts.items():
                column = self.vocabulary[word]
                out[row, column] = math.log1p(count) * self.idf[column]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return torch.from_numpy(out)

    def _words(self, texts: Sequence[str], pairs: Sequence[str] | None) -> list[list[str]]:
        joined = [
            t if pairs is None else f"{t} {p}" for t, p in zip(texts, pairs or texts, strict=True)
        ]
        if self.tokenizer is not None:
            return [self.tokenizer.tokenize(t) for t in joined]
        if self.params.lowercase:
            joined = [t.lower() for t in joined]
        return [_WORD.findall(t) for t in joined]


def teacher_encoder(params: TextParams, where: str) -> TextEncoder | None:
    """The encoder of the teacher's own view, or None when it reads the student's
    (no ``teacher_representation``, or the same as ``representation``)."""
    wanted = params.teacher_representation
    if wanted is None or wanted == params.representation:
        return None
    return TextEncoder(params.model_copy(update={"representation": wanted}), where)


def teacher_info_fields(encoder: TextEncoder) -> dict[str, Any]:
    """``DataInfo`` fields describing the teacher's view that ``encoder`` makes."""
    fields = encoder.info_fields()
    return {
        "teacher_input_shape": fields["input_shape"],
        "teacher_input_dtype": fields["input_dtype"],
        "teacher_vocab_size": fields.get("vocab_size"),
        "teacher_pad_token_id": fields.get("pad_token_id"),
    }


def encode_tagged_words(
    tokenizer: Any,
    words: Sequence[Sequence[str]],
    tags: Sequence[Sequence[int]],
    max_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and per-position tags of pre-split words (the first-sub-token rule).

    Each word's tag goes to its first sub-token; its later sub-tokens, special tokens
    (``[CLS]``, ``[SEP]``) and padding get ``-2`` (:data:`~kdforge.data.NOT_A_WORD`);
    a word tagged ``-1`` (unknown) keeps ``-1`` at its first sub-token. Words cut off by
    ``max_length`` lose their tags.

    Args:
        tokenizer: A Hugging Face tokenizer (fast ones report word ids; slow ones are
            aligned word by word).
        words: One list of words per row.
        tags: One tag id (or -1) per word of each row.
        max_length: Positions per row (padded and truncated to it).

    Returns:
        int64 ids ``(n, max_length)`` and int64 tags ``(n, max_length)``.
    """
    rows = [list(map(str, w)) for w in words]
    targets = np.full((len(rows), max_length), NOT_A_WORD, dtype=np.int64)
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(
            rows,
            is_split_into_words=True,
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        for row, row_tags in enumerate(tags):
            previous = None
            for position, word in enumerate(encoded.word_ids(row)):
                if word is not None and word != previous:
                    targets[row, position] = row_tags[word]
                previous = word
        ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        return torch.from_numpy(ids), torch.from_numpy(targets)
    # A slow tokenizer has no word ids: tokenise word by word, then add the specials.
    ids = np.full((len(rows), max_length), int(tokenizer.pad_token_id), dtype=np.int64)
    room = max_length - tokenizer.num_special_tokens_to_add()
    for row, (row_words, row_tags) in enumerate(zip(rows, tags, strict=True)):
        pieces: list[int] = []
        firsts: list[int] = []  # per sub-token: the word's tag at its first, else -2
        for word, tag in zip(row_words, row_tags, strict=True):
            word_ids = tokenizer.encode(word, add_special_tokens=False)
            pieces += word_ids
            firsts += [tag] + [NOT_A_WORD] * (len(word_ids) - 1)
        pieces, firsts = pieces[:room], firsts[:room]
        full = tokenizer.build_inputs_with_special_tokens(pieces)
        special = tokenizer.get_special_tokens_mask(pieces)
        aligned = iter(firsts)
        for position, (token, is_special) in enumerate(zip(full, special, strict=True)):
            ids[row, position] = token
            targets[row, position] = NOT_A_WORD if is_special else next(aligned)
    return torch.from_numpy(ids), torch.from_numpy(targets)
