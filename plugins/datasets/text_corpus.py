"""Dataset ``text_corpus``: a text corpus as fixed-length token blocks for language modeling.

Documents come from plain-text files, JSONL files (``field``) and folders saved with
``datasets``' ``save_to_disk`` (``column``), given as paths or globs in ``paths``, or
from the installed Python standard library's docstrings (``source: python_stdlib``, no
files needed); see :mod:`kdforge.plugins.datasets._corpus`. They are tokenized with a
local tokenizer folder (``tokenizer``: use the teacher's model folder, so that teacher
and student read the same ids) and made into blocks of ``block_size`` tokens:

* ``packing: true``: the documents joined by the tokenizer's EOS (causal) or SEP
  (masked) token and cut into full blocks (the incomplete tail is dropped). A document
  may straddle two blocks: cutting the stream wastes no tokens on padding, and a model
  trained on blocks sees document boundaries as the separator token;
* ``packing: false``: one block per document, truncated, padded with the pad id; the
  padding is never scored (target -2) and the attention mask (``ids != pad``) skips it.

Targets (``mode``), as the ``language_modeling`` task reads them:

* ``causal``: the next input token; the last position and padding -2;
* ``masked``: BERT's masking, ``mask_probability`` (15%) of the real, non-special
  positions chosen, of those 80% replaced by ``[MASK]``, 10% by a random token, 10%
  kept; targets are the original tokens there and -2 elsewhere. The masking is drawn
  once from the seed and stored in the split's inputs, so the teacher (its cached
  outputs) and every student read the very same masked blocks. Blocks are wrapped in
  ``[CLS] ... [SEP]`` when the tokenizer has both.

Blocks are split at random (seeded) into train/val/test by ``val_fraction`` and
``test_fraction`` of the blocks. ``DataInfo``: task ``language_modeling``,
``num_classes`` = the vocabulary (``len(tokenizer)``, or ``num_classes``), int64 inputs
of shape ``(block_size,)``, the pad id and the tokenizer folder. Needs the ``[hf]``
extra. The blocks are held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

import kdforge
from kdforge.data import NOT_A_WORD, DataInfo, DataSplits, Split
from kdforge.errors import DataError
from kdforge.interfaces import DatasetPlugin, PluginParams
from kdforge.plugins.datasets._corpus import (
    TextUnit,
    expand_paths,
    read_documents,
    stdlib_docstrings,
)
from kdforge.plugins.datasets._lm_blocks import (
    causal_targets,
    mask_tokens,
    pack_blocks,
    pad_documents,
    split_blocks,
)
from kdforge.plugins.datasets._splits import dataset_name
from kdforge.plugins.datasets._text import load_tokenizer

__all__ = ["TextCorpus", "TextCorpusParams"]

logger = logging.getLogger("kdforge.data")

_TOKENIZE_BATCH = 1000  # documents per call of the (fast, batched) tokenizer


class TextCorpusParams(PluginParams):
    """Parameters of the ``text_corpus`` dataset."""

    source: Literal["files", "python_stdlib"] = Field(
        "files",
        description="files: read `paths`; python_stdlib: the docstrings of the installed "
        "Python standard library (no files needed).",
    )
    paths: list[str] = Field(
        default_factory=list,
        description="Text files, JSONL files (*.jsonl, *.ndjson) and folders saved with "
        "save_to_disk, as paths or globs ('corpus/**/*.txt'), read in this order.",
    )
    tokenizer: str = Field(
        description="Local tokenizer folder: use the teacher's model folder (its "
        "tokenizer), so that teacher and student read the same token ids."
    )
    block_size: int = Field(128, description="Tokens per block (row); at least 2.")
    packing: bool = Field(
        True,
        description="true: documents joined by EOS/SEP and cut into full blocks; false: "
        "one block per document, truncated and padded (padding is not scored).",
    )
    mode: Literal["causal", "masked"] = Field(
        "causal",
        description="causal: targets are the next tokens; masked: BERT's masking "
        "(mask_probability, 80% [MASK] / 10% random / 10% kept), drawn once from the seed.",
    )
    mask_probability: float = Field(
        0.15, gt=0, lt=1, description="masked mode: share of real, non-special tokens chosen."
    )
    text_unit: TextUnit = Field(
        "paragraph",
        description="Plain-text files: one document per file, per blank-line separated "
        "paragraph, or per line.",
    )
    field: str = Field("text", description="JSONL files: the key holding each document.")
    column: str = Field("text", description="Saved HF datasets: the column holding the text.")
    stdlib_packages: list[str] = Field(
        default_factory=list,
        description="source python_stdlib: only these top-level modules/packages (e.g. "
        "[json, email]); all of the standard library when empty.",
    )
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of blocks for validation.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of blocks for test.")
    max_documents: int | None = Field(
        None, ge=1, description="Read at most this many documents (the first ones)."
    )
    max_blocks: int | None = Field(
        None, ge=3, description="Keep at most this many blocks (the first ones), before splitting."
    )
    num_classes: int | None = Field(
        None,
        ge=2,
        description="Vocabulary size (logits per position); default len(tokenizer). Set "
        "it to the teacher's output size when its embedding table is padded beyond the "
        "tokenizer.",
    )
    pad_token_id: int | None = Field(
        None, ge=0, description="Padding id when the tokenizer has no pad token."
    )

    @field_validator("paths", "stdlib_packages", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> TextCorpusParams:
        if self.block_size < 2:
            raise ValueError(
                f"block_size {self.block_size} is too short: a block needs at least 2 "
                "tokens (one to read, one to predict)"
            )
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction ({self.val_fraction + self.test_fraction:g}) "
                "must stay below 0.9 to leave training blocks"
            )
        if self.source == "python_stdlib" and self.paths:
            raise ValueError("paths are set but source is python_stdlib; use one of them")
        if self.mode == "masked" and self.packing and self.block_size < 3:
            raise ValueError("masked packing wraps blocks in [CLS] ... [SEP]: block_size >= 3")
        return self


class TextCorpus(DatasetPlugin):
    """Text files, JSONL, saved HF datasets or the stdlib's docstrings as LM token blocks."""

    name = "text_corpus"
    Params = TextCorpusParams

    def load(self, seed: int) -> DataSplits:
        """Read, tokenize, block, (mask) and split the corpus."""
        params = self.params
        assert isinstance(params, TextCorpusParams)
        where = "dataset 'text_corpus'"
        tokenizer = load_tokenizer(params.tokenizer, f"{where}: tokenizer")
        vocab = params.num_classes or len(tokenizer)
        documents = self._documents(where)
        ids, real, count = self._blocks(tokenizer, documents, where)
        if ids.size and int(ids.max()) >= vocab:
            raise DataError(
                f"{where}: the tokenizer gives ids up to {int(ids.max())} but the vocabulary "
                f"(num_classes) is {vocab}",
                hint="leave num_classes unset (len(tokenizer)) or raise it",
            )
        rng = np.random.default_rng([seed, 0])
        if params.mode == "masked":
            mask_id = tokenizer.mask_token_id
            if mask_id is None:
                raise DataError(
                    f"{where}: mode masked needs a tokenizer with a mask token; "
                    f"{params.tokenizer} has none",
                    hint="use the masked teacher's tokenizer folder, or mode: causal",
                )
            inputs, targets = mask_tokens(
                ids,
                real,
                special_ids=list(tokenizer.all_special_ids),
                mask_id=int(mask_id),
                vocab_size=vocab,
                probability=params.mask_probability,
                rng=np.random.default_rng([seed, 1]),
            )
        else:
            inputs, targets = ids, causal_targets(ids, real)
        scored = (targets != NOT_A_WORD).any(axis=1)
        if not scored.all():  # e.g. a one-token document: nothing to predict
            logger.info("%s: %d block(s) with no token to predict left out", where, (~scored).sum())
            inputs, targets = inputs[scored], targets[scored]
        if params.max_blocks is not None:
            inputs, targets = inputs[: params.max_blocks], targets[: params.max_blocks]
        try:
            parts = split_blocks(len(inputs), params.val_fraction, params.test_fraction, rng)
        except ValueError:
            raise DataError(
                f"{where}: the corpus ({count} documents) gives {len(inputs)} block(s) of "
                f"{params.block_size} tokens; train, val and test need at least 3",
                hint="add text, lower block_size, or raise max_documents",
            ) from None
        pad = self._pad_id(tokenizer)
        info = DataInfo(
            name="python_stdlib" if params.source == "python_stdlib" else self._name(),
            input_shape=(params.block_size,),
            num_classes=vocab,
            input_dtype="int64",
            vocab_size=vocab,
            pad_token_id=pad,
            tokenizer=str(Path(params.tokenizer).expanduser().resolve()),
            task="language_modeling",
        )
        train, val, test = (
            Split(torch.from_numpy(inputs[rows].copy()), torch.from_numpy(targets[rows].copy()))
            for rows in parts
        )
        logger.info(
            "%s: %d documents, %d blocks of %d tokens (train %d, val %d, test %d)",
            where,
            count,
            len(inputs),
            params.block_size,
            len(train),
            len(val),
            len(test),
        )
        return DataSplits(info=info, train=train, val=val, test=test)

    def _name(self) -> str:
        params = self.params
        assert isinstance(params, TextCorpusParams)
        first = params.paths[0] if params.paths else "corpus"
        return dataset_name(first.split("*")[0].rstrip("/") or first)

    def _documents(self, where: str) -> Iterator[str]:
        """The documents, ``max_documents`` at most."""
        params = self.params
        assert isinstance(params, TextCorpusParams)
        docs: Iterator[str]
        if params.source == "python_stdlib":
            docs = stdlib_docstrings(params.stdlib_packages)
        else:
            paths = expand_paths(params.paths, f"{where}: paths")
            docs = read_documents(
                paths,
                text_unit=params.text_unit,
                field=params.field,
                column=params.column,
                where=where,
            )
        return islice(docs, params.max_documents) if params.max_documents else docs

    def _blocks(
        self, tokenizer: Any, documents: Iterator[str], where: str
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``(ids, real-token mask, number of documents)`` of the blocks."""
        params = self.params
        assert isinstance(params, TextCorpusParams)
        tokenized: list[list[int]] = []
        count = 0
        while batch := list(islice(documents, _TOKENIZE_BATCH)):
            count += len(batch)
            # verbose=False: long documents are cut into blocks here, not fed whole to
            # a model, so the tokenizer's "longer than model_max_length" warning is noise.
            tokenized += tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
        if not any(tokenized):
            source = params.stdlib_packages if params.source == "python_stdlib" else params.paths
            raise DataError(
                f"{where}: the corpus is empty: {count} documents and no tokens from {source}",
                hint="check the files (and field/column/text_unit) hold text",
            )
        wrap = (
            (int(tokenizer.cls_token_id), int(tokenizer.sep_token_id))
            if params.mode == "masked"
            and tokenizer.cls_token_id is not None
            and tokenizer.sep_token_id is not None
            else None
        )
        ends = (
            (tokenizer.eos_token_id, tokenizer.sep_token_id)
            if params.mode == "causal"
            else (tokenizer.sep_token_id, tokenizer.eos_token_id)
        )
        end = next((int(e) for e in ends if e is not None), None)
        if params.packing:
            if end is None:
                raise DataError(
                    f"{where}: packing joins documents with the EOS or SEP token, and "
                    f"tokenizer {params.tokenizer} has neither",
                    hint="set packing: false (one padded block per document)",
                )
            ids = pack_blocks(tokenized, block_size=params.block_size, separator=end, wrap=wrap)
            return ids, np.ones(ids.shape, dtype=bool), count
        pad = self._pad_id(tokenizer)
        if pad is None:
            raise DataError(
                f"{where}: packing: false pads each document, and tokenizer "
                f"{params.tokenizer} has no pad token",
                hint="set dataset.params.pad_token_id (an id the model never reads as "
                "text), or packing: true",
            )
        ids, real = pad_documents(
            tokenized,
            block_size=params.block_size,
            pad=pad,
            end=None if wrap else end,
            wrap=wrap,
        )
        return ids, real, count

    def _pad_id(self, tokenizer: Any) -> int | None:
        params = self.params
        assert isinstance(params, TextCorpusParams)
        if params.pad_token_id is not None:
            return params.pad_token_id
        pad = getattr(tokenizer, "pad_token_id", None)
        return None if pad is None else int(pad)


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``text_corpus`` dataset."""
    register("text_corpus", TextCorpus)
