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
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

import kdforge
from kdforge.batching import apply_storage
from kdforge.data import DataInfo, DataSplits
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
from kdforge.plugins.datasets._text import (
    TextEncoder,
    TextParams,
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


class TextDataset(DatasetPlugin):
    """Texts with labels from CSV/JSONL, as token ids (teacher's tokenizer) or bag of words."""

    name = "text"
    Params = TextDatasetParams

    def load(self, seed: int) -> DataSplits:
        """Read the texts, split them, and encode them."""
        params = self.params
        assert isinstance(params, TextDatasetParams)
        where = f"dataset 'text' (path={params.path})"
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
