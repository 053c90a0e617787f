"""Dataset ``text``: sequence classification from a CSV, TSV or JSON Lines file.

Each row holds a text (``text_column``; optionally a second text in
``text_pair_column`` for pair tasks such as NLI) and a label (``label_column``; empty =
unlabeled, joins the ``transfer`` split). Texts are encoded as token ids with the
teacher's tokenizer (``tokenizer``: its local model folder, or any saved tokenizer
folder) for embedding-based students, or as bag-of-words vectors
(``representation: bag_of_words``) that the built-in ``mlp`` space can distil into.
The bag-of-words vocabulary is fitted on the training split only.

``teacher_representation`` gives the teacher its own view of the rows (e.g. token ids
for a Hugging Face teacher while an ``mlp`` student reads bag-of-words vectors).

Token tagging (task ``token_classification``): set ``tags_column``. Each row's
``text_column`` then holds a list of words (a string is split on whitespace) and
``tags_column`` one tag per word (a list of the same length; an empty cell, or a null
tag, means unknown). Words are tokenised together (``is_split_into_words``) with the
tokenizer and each word's tag goes to its first sub-token; other sub-tokens, special
tokens and padding get ``-2``, unknown tags ``-1`` (see
:mod:`kdforge.plugins.tasks.token_classification`). ``DataInfo.task`` is then
``token_classification``, ``num_classes`` the number of tags and ``class_names`` the
tag names (strings in sorted order; non-negative integer tags keep their values). A
JSON Lines row: ``{"tokens": ["Alice", "met", "Bob"], "tags": ["PER", "O", "PER"]}``
with ``text_column: tokens`` and ``tags_column: tags``. Rows are split at random (not
stratified); rows without any tag form the transfer split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

import kdforge
from kdforge.batching import apply_storage
from kdforge.data import UNLABELED, DataInfo, DataSplits, Split
from kdforge.errors import DataError
from kdforge.interfaces import DatasetPlugin
from kdforge.plugins.datasets._splits import (
    FileDatasetParams,
    SplitRows,
    assign_splits,
    dataset_name,
    encode_labels,
    make_splits,
    with_teacher_view,
)
from kdforge.plugins.datasets._tables import is_blank, load_frame, require_columns
from kdforge.plugins.datasets._targets import unstratified
from kdforge.plugins.datasets._text import (
    TextEncoder,
    TextParams,
    encode_tagged_words,
    teacher_encoder,
    teacher_info_fields,
)


class TextDatasetParams(FileDatasetParams, TextParams):
    """Parameters of the ``text`` dataset."""

    path: str = Field(description="CSV/TSV/JSONL file; may hold a {split} placeholder.")
    text_column: str = Field("text", description="Column holding the text.")
    label_column: str = Field("label", description="Column holding the class label.")
    text_pair_column: str | None = Field(
        None, description="Optional second text per row (pair classification)."
    )
    split_column: str | None = Field(
        None, description="Column naming each row's split (train/val/test/transfer)."
    )
    tags_column: str | None = Field(
        None,
        description="Token tagging: column holding one tag per word (a list); "
        "text_column then holds the words (a list). Makes the task token_classification.",
    )

    @model_validator(mode="after")
    def _tagging_needs_tokens(self) -> TextDatasetParams:
        if self.tags_column and self.representation != "tokens":
            raise ValueError("tags_column (token tagging) needs representation: tokens")
        if self.tags_column and self.text_pair_column:
            raise ValueError("tags_column (token tagging) takes no text_pair_column")
        return self


class TextDataset(DatasetPlugin):
    """Texts with labels from CSV/JSONL, as token ids (teacher's tokenizer) or bag of words."""

    name = "text"
    Params = TextDatasetParams

    def load(self, seed: int) -> DataSplits:
        """Read the texts, split them, and encode them."""
        params = self.params
        assert isinstance(params, TextDatasetParams)
        where = f"dataset 'text' (path={params.path})"
        if params.tags_column:
            return self._load_tagged(params, seed, where)
        frame, given = load_frame(
            params.path,
            params.split_column,
            where,
            label_column=params.label_column,
            use_transfer=params.use_transfer,
        )
        columns = [params.text_column, params.label_column]
        if params.text_pair_column:
            columns.append(params.text_pair_column)
        require_columns(frame, columns, where, "text_column/label_column")
        texts = _texts(frame[params.text_column].tolist())
        pairs = _texts(frame[params.text_pair_column].tolist()) if params.text_pair_column else None
        labels, classes = encode_labels(frame[params.label_column].tolist(), f"{where}: labels")
        rows = assign_splits(labels, given, params, seed, where)
        encoder = TextEncoder(params, where)
        encoder.fit(
            [texts[i] for i in rows.train],
            [pairs[i] for i in rows.train] if pairs is not None else None,
        )
        if encoder.bag_of_words and not encoder.vocabulary:
            raise DataError(f"{where}: the training texts hold no words")
        self.encoder = encoder

        def inputs_for(_: str, picked: np.ndarray) -> torch.Tensor:
            chosen = [texts[i] for i in picked]
            chosen_pairs = [pairs[i] for i in picked] if pairs is not None else None
            return encoder.transform(chosen, chosen_pairs)

        fields = encoder.info_fields()
        if params.text_pair_column:  # served models take one text: no raw-text serving
            fields.pop("tokenizer", None)
        info = DataInfo(
            name=dataset_name(params.path),
            num_classes=len(classes),
            class_names=classes,
            **fields,
        )
        splits = make_splits(info, rows, labels, inputs_for)
        splits = _with_teacher_view(splits, params, rows, texts, pairs, where)
        return apply_storage(
            splits,
            storage=params.storage,
            memory_limit_mb=params.memory_limit_mb,
            num_workers=params.num_workers,
        )

    def _load_tagged(self, params: TextDatasetParams, seed: int, where: str) -> DataSplits:
        """Token tagging: words and one tag per word per row (see the module docstring)."""
        assert params.tags_column is not None
        frame, given = load_frame(
            params.path,
            params.split_column,
            where,
            label_column=params.tags_column,
            use_transfer=params.use_transfer,
        )
        require_columns(
            frame, [params.text_column, params.tags_column], where, "text_column/tags_column"
        )
        words = [
            _words(v, f"{where}: row {i + 1}") for i, v in enumerate(frame[params.text_column])
        ]
        raw_tags = [
            _row_tags(v, len(words[i]), f"{where}: row {i + 1}")
            for i, v in enumerate(frame[params.tags_column])
        ]
        splits, self.encoder = tagged_splits(
            words, raw_tags, given, params, params, seed, where, dataset_name(params.path)
        )
        return splits


def tagged_splits(
    words: list[list[str]],
    raw_tags: list[list[Any]],
    given: Any,
    text: TextParams,
    split_params: FileDatasetParams,
    seed: int,
    where: str,
    name: str,
    tag_names: tuple[str, ...] | None = None,
) -> tuple[DataSplits, TextEncoder]:
    """Token-tagging splits from each row's words and one tag per word (``None``: unknown).

    Shared by ``text`` (``tags_column``) and ``hf_disk`` (a tags list column).

    Args:
        words: The words of each row.
        raw_tags: One tag per word of each row (names, or ids when ``tag_names`` is given).
        given: Each row's given split, or None.
        text: The tokenizer settings.
        split_params: The split settings (fractions, seed handling, storage).
        seed: The split seed.
        where: Names the dataset for error messages.
        name: The dataset's name.
        tag_names: The tags' names when ``raw_tags`` hold their ids (a ``ClassLabel``).

    Returns:
        The splits (the first-sub-token rule, :func:`encode_tagged_words`) and the encoder.
    """
    flat = [tag for row in raw_tags for tag in row]
    if tag_names is None:
        codes, classes = encode_labels(flat, f"{where}: tags")
    else:  # ids of a ClassLabel: its names, every id kept
        codes = np.asarray([-1 if t is None or t < 0 else int(t) for t in flat], dtype=np.int64)
        if len(codes) and int(codes.max()) >= len(tag_names):
            raise DataError(f"{where}: tags go beyond the ClassLabel's {len(tag_names)} names")
        classes = tag_names
    tags, start = [], 0
    for row in raw_tags:
        tags.append([int(c) for c in codes[start : start + len(row)]])
        start += len(row)
    has_tag = np.array([any(t >= 0 for t in row) for row in tags], dtype=np.int64) - 1
    rows = assign_splits(has_tag, given, unstratified(split_params), seed, where)
    encoder = TextEncoder(text, where)
    ids, targets = encode_tagged_words(encoder.tokenizer, words, tags, text.max_length)
    fields = encoder.info_fields()
    # Served models answer per token of a tokenised text; raw-text serving (which
    # would have to split words and map tags back) is not offered for tagging.
    fields.pop("tokenizer", None)
    info = DataInfo(
        name=name,
        num_classes=len(classes),
        class_names=classes,
        task="token_classification",
        **fields,
    )

    def split(picked: np.ndarray | None, hide: bool) -> Split:
        index = torch.from_numpy(np.asarray(picked, dtype=np.int64))
        y = targets[index].clone()
        if hide:
            y[y >= 0] = UNLABELED
        return Split(ids[index].clone(), y)

    splits = DataSplits(
        info=info,
        train=split(rows.train, False),
        val=split(rows.val, False),
        test=split(rows.test, False),
        transfer=split(rows.transfer, True) if rows.transfer is not None else None,
    )
    return (
        apply_storage(
            splits,
            storage=split_params.storage,
            memory_limit_mb=split_params.memory_limit_mb,
            num_workers=split_params.num_workers,
        ),
        encoder,
    )


def _words(value: Any, where: str) -> list[str]:
    """A row's words: a list as given, a string split on whitespace."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple | np.ndarray):
        return [str(w) for w in value]
    raise DataError(f"{where}: the words are {type(value).__name__}, not a list of words")


def _row_tags(value: Any, count: int, where: str) -> list[Any]:
    """A row's tags, one per word (an empty cell: every tag unknown)."""
    if isinstance(value, list | tuple | np.ndarray):
        tags = list(value)
        if len(tags) != count:
            raise DataError(
                f"{where}: {len(tags)} tags for {count} words",
                hint="give one tag per word (null for an unknown tag)",
            )
        return tags
    if is_blank(value):
        return [None] * count
    raise DataError(f"{where}: the tags are {type(value).__name__}, not a list of tags")


def _with_teacher_view(
    splits: DataSplits,
    params: TextDatasetParams,
    rows: SplitRows,
    texts: list[str],
    pairs: list[str] | None,
    where: str,
) -> DataSplits:
    """``splits`` plus the teacher's own view (``teacher_representation``), if any."""
    encoder = teacher_encoder(params, where)
    if encoder is None:
        return splits
    encoder.fit(
        [texts[i] for i in rows.train],
        [pairs[i] for i in rows.train] if pairs is not None else None,
    )

    def inputs_for(_: str, picked: np.ndarray) -> torch.Tensor:
        chosen_pairs = [pairs[i] for i in picked] if pairs is not None else None
        return encoder.transform([texts[i] for i in picked], chosen_pairs)

    return with_teacher_view(splits, rows, inputs_for, teacher_info_fields(encoder))


def _texts(values: list) -> list[str]:
    return ["" if is_blank(v) else str(v) for v in values]


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``text`` dataset."""
    register("text", TextDataset)
