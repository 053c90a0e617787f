"""Dataset ``hf_disk``: a Hugging Face ``datasets`` dataset saved with ``save_to_disk``.

Reads a local folder only (``datasets.load_from_disk``; nothing is downloaded). A
saved ``DatasetDict`` gives its splits (``train``, ``validation``/``val``/``dev``,
``test``, ``unsupervised``/``unlabeled``/``transfer``; other names through
``split_names``); a single ``Dataset`` is split seeded and stratified. The input
column decides the encoding:

* numeric arrays (``List``, ``ArrayXD``, numbers): float32 (signed integers: int64);
* ``Image``: decoded and transformed like ``image_folder`` (the ``image`` section);
* strings: token ids or bag of words like ``text`` (the ``text`` section; its
  ``teacher_representation`` gives the teacher its own view of the rows).

Labels come from ``label_column`` (``ClassLabel`` names are kept; ``-1`` or empty =
unlabeled); or, for regression, from the numeric ``targets`` columns, for multi-label
data from the 0/1 ``labels`` columns (one output each, None = unknown), and for token
tagging from the ``tags_column`` list column (one tag per word of the input column).
Arrow files are memory-mapped, so array and image columns of datasets bigger than
memory stream from disk; text columns are encoded in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

import kdforge
from kdforge.batching import apply_storage
from kdforge.data import DataInfo, DataSplits, Inputs, LazyInputs
from kdforge.errors import DataError
from kdforge.interfaces import DatasetPlugin
from kdforge.plugins.datasets._images import ImageParams, ImageTransform, RandomFlipCrop
from kdforge.plugins.datasets._splits import (
    FileDatasetParams,
    RowSources,
    assign_splits,
    concat_sources,
    dataset_name,
    encode_labels,
    make_splits,
    normalize_split_name,
    with_teacher_view,
)
from kdforge.plugins.datasets._targets import (
    float_targets,
    make_float_splits,
    row_codes,
    unstratified,
)
from kdforge.plugins.datasets._text import (
    TextEncoder,
    TextParams,
    teacher_encoder,
    teacher_info_fields,
)
from kdforge.plugins.datasets.text import tagged_splits

# datasets belongs to the optional [hf] extra: imported only when one is read.


class HFDiskParams(FileDatasetParams):
    """Parameters of the ``hf_disk`` dataset."""

    path: str = Field(description="Folder written by Dataset/DatasetDict.save_to_disk.")
    input_column: str | None = Field(
        None, description="Column of inputs (default: the only column besides the label)."
    )
    label_column: str = Field("label", description="Column of class labels.")
    split_names: dict[str, Literal["train", "val", "test", "transfer"]] | None = Field(
        None, description="Map DatasetDict split names to train/val/test/transfer."
    )
    scale: float | None = Field(None, description="Multiply float array inputs by this.")
    image: ImageParams = Field(
        default_factory=lambda: ImageParams.model_validate({}),
        description="Image column: size, channels, normalising.",
    )
    text: TextParams | None = Field(
        None, description="String column: tokenizer and representation (see dataset text)."
    )
    targets: list[str] | None = Field(
        None,
        min_length=1,
        description="Regression: numeric columns, one target each (task regression; "
        "None/NaN = unknown); label_column is then not read.",
    )
    labels: list[str] | None = Field(
        None,
        min_length=1,
        description="Multilabel: 0/1 (or bool) columns, one label each (task multilabel).",
    )
    tags_column: str | None = Field(
        None,
        description="Token tagging: a list column of one tag per word (names or a "
        "ClassLabel sequence; None = unknown); input_column then holds the words (a list "
        "or a string split on whitespace) and `text` the tokenizer "
        "(task token_classification).",
    )

    @model_validator(mode="after")
    def _one_target_form(self) -> HFDiskParams:
        if self.targets and self.labels:
            raise ValueError("give targets (regression) or labels (multilabel), not both")
        return self

    @property
    def target_columns(self) -> list[str]:
        """The columns targets come from (empty: class labels in label_column)."""
        if self.tags_column:
            return [self.tags_column]
        return list(self.targets or self.labels or [])


class _HFInputs(LazyInputs):
    """Rows of one column of a saved dataset, read from its memory-mapped Arrow files."""

    def __init__(self, path: str, member: str, column: str, rows: np.ndarray) -> None:
        self.path = path
        self.member = member
        self.column = column
        self.rows = np.asarray(rows, dtype=np.int64)
        self._dataset: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_dataset"] = None  # reopened (memory-mapped) in each process
        return state

    def dataset(self) -> Any:
        """The member dataset, with only the input column (opened once per process)."""
        if self._dataset is None:
            self._dataset = _open_member(self.path, self.member).select_columns([self.column])
        return self._dataset

    def __len__(self) -> int:
        return len(self.rows)

    def _values(self, indices: Sequence[int], numpy: bool) -> Any:
        wanted = self.rows[np.asarray(indices, dtype=np.int64)].tolist()
        data = self.dataset().with_format("numpy") if numpy else self.dataset()
        return data[wanted][self.column]

    def fingerprint(self) -> str:
        """Hash of the Arrow files' paths, sizes and times, the column and the rows."""
        digest = hashlib.sha256(f"{self.member}\0{self.column}\0{self._extra()}".encode())
        for entry in self.dataset().cache_files:
            stat = os.stat(entry["filename"])
            digest.update(f"{entry['filename']}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        digest.update(self.rows.tobytes())
        return digest.hexdigest()[:16]

    def _extra(self) -> str:
        return ""


class HFArrayInputs(_HFInputs):
    """A numeric array column."""

    def __init__(
        self,
        path: str,
        member: str,
        column: str,
        rows: np.ndarray,
        dtype: torch.dtype,
        shape: tuple[int, ...],
        scale: float | None,
    ) -> None:
        super().__init__(path, member, column, rows)
        self._dtype, self._shape, self.scale = dtype, shape, scale

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one row."""
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        """float32 or int64."""
        return self._dtype

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Read rows as one array."""
        block = np.asarray(self._values(indices, numpy=True))
        if block.dtype == object:
            raise DataError(
                f"dataset 'hf_disk' ({self.path}): column {self.column!r} has rows of "
                "different shapes",
                hint="store fixed-shape arrays (e.g. datasets.Array2D) or pad them",
            )
        if self._dtype == torch.int64:
            return torch.from_numpy(block.astype(np.int64))
        block = block.astype(np.float32)
        return torch.from_numpy(block * np.float32(self.scale) if self.scale else block)

    def _extra(self) -> str:
        return f"{self._dtype}\0{self.scale}"


class HFImageInputs(_HFInputs):
    """An ``Image`` column, decoded and transformed on demand."""

    def __init__(
        self,
        path: str,
        member: str,
        column: str,
        rows: np.ndarray,
        transform: ImageTransform,
        augmentation: RandomFlipCrop | None,
    ) -> None:
        super().__init__(path, member, column, rows)
        self.transform = transform
        self.augmentation = augmentation

    @property
    def example_shape(self) -> tuple[int, ...]:
        """``(channels, height, width)``."""
        return self.transform.shape

    @property
    def dtype(self) -> torch.dtype:
        """Always float32."""
        return torch.float32

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Decode and transform the images."""
        images = self._values(indices, numpy=False)
        if not len(images):
            return torch.empty((0, *self.example_shape))
        return torch.stack([self.transform(image) for image in images])

    def _extra(self) -> str:
        return repr(self.transform)


class HFDisk(DatasetPlugin):
    """A Hugging Face dataset saved with save_to_disk (arrays, images or text; no download)."""

    name = "hf_disk"
    Params = HFDiskParams

    def load(self, seed: int) -> DataSplits:
        """Open the saved dataset, split it, and encode the input column."""
        params = self.params
        assert isinstance(params, HFDiskParams)
        where = f"dataset 'hf_disk' (path={params.path})"
        members, given_by_member = _members(params, where)
        first = next(iter(members.values()))
        column = _input_column(first, params, where)
        kind = _column_kind(first.features[column])
        given = [given_by_member[k] for k, m in members.items() for _ in range(len(m))]
        if params.tags_column:
            return self._tagged(members, column, given, seed, where)
        task = "regression" if params.targets else "multilabel" if params.labels else None
        targets: np.ndarray | None = None
        if task is not None:
            targets, classes = float_targets(
                _target_rows(members, params.target_columns, where),
                task,
                params.target_columns,
                where,
            )
            labels = row_codes(targets)
            rows = assign_splits(
                labels, given if any(given) else None, unstratified(params), seed, where
            )
        else:
            labels, classes = _labels(members, params.label_column, where)
            rows = assign_splits(labels, given if any(given) else None, params, seed, where)
        table = RowSources(list(members), [len(m) for m in members.values()])
        path = str(params.path)
        fields: dict[str, Any]
        teacher_view: tuple[Any, dict[str, Any]] | None = None
        if kind == "text":
            read, fields, teacher_view = self._text(members, column, rows.train, table, where)
        elif kind == "image":
            transform, augmentation = params.image.transform(), params.image.augmentation()

            def read(split: str, key: str, local: np.ndarray) -> Inputs:
                aug = augmentation if split in ("train", "transfer") else None
                return HFImageInputs(path, key, column, local, transform, aug)

            fields = {"input_shape": transform.shape}
        else:
            sample = np.asarray(first.with_format("numpy")[0][column])
            dtype = torch.int64 if sample.dtype.kind == "i" else torch.float32

            def read(split: str, key: str, local: np.ndarray) -> Inputs:
                return HFArrayInputs(path, key, column, local, dtype, sample.shape, params.scale)

            fields = {
                "input_shape": tuple(sample.shape),
                "input_dtype": str(dtype).removeprefix("torch."),
            }
        info = DataInfo(
            name=dataset_name(params.path),
            num_classes=len(classes),
            class_names=classes,
            task=task or "classification",
            **fields,
        )

        def inputs_for(split: str, picked: np.ndarray) -> Inputs:
            return concat_sources(table, picked, lambda key, local: read(split, key, local))

        splits = (
            make_splits(info, rows, labels, inputs_for)
            if targets is None
            else make_float_splits(info, rows, targets, inputs_for)
        )
        if teacher_view is not None:  # text.teacher_representation: the teacher's own view
            teacher_read, teacher_fields = teacher_view
            splits = with_teacher_view(
                splits,
                rows,
                lambda split, picked: concat_sources(
                    table, picked, lambda key, local: teacher_read(split, key, local)
                ),
                teacher_fields,
            )
        return apply_storage(
            splits,
            storage=params.storage,
            memory_limit_mb=params.memory_limit_mb,
            num_workers=params.num_workers,
        )

    def _tagged(
        self, members: dict[str, Any], column: str, given: list[str], seed: int, where: str
    ) -> DataSplits:
        """Token tagging: a words column and a tags list column (first-sub-token rule)."""
        params = self.params
        assert isinstance(params, HFDiskParams) and params.tags_column is not None
        if params.text is None or params.text.representation != "tokens":
            raise DataError(
                f"{where}: tags_column (token tagging) needs text.tokenizer and "
                "text.representation: tokens"
            )
        import datasets

        words: list[list[str]] = []
        tags: list[list[Any]] = []
        names: tuple[str, ...] | None = None
        for key, member in members.items():
            tagged = params.tags_column in member.column_names
            column_tags = member[params.tags_column] if tagged else [None] * len(member)
            for i, (value, row_tags) in enumerate(zip(member[column], column_tags, strict=True)):
                words.append(value.split() if isinstance(value, str) else [str(w) for w in value])
                row = list(row_tags) if row_tags is not None else [None] * len(words[-1])
                if len(row) != len(words[-1]):
                    raise DataError(
                        f"{where}: split {key or 'data'!r} row {i + 1}: {len(row)} tags for "
                        f"{len(words[-1])} words"
                    )
                tags.append(row)
            if params.tags_column in member.column_names:
                feature = member.features[params.tags_column]
                inner = getattr(feature, "feature", None)
                if isinstance(inner, datasets.ClassLabel):
                    names = tuple(inner.names)
        splits, self.encoder = tagged_splits(
            words,
            tags,
            given if any(given) else None,
            params.text,
            params,
            seed,
            where,
            dataset_name(params.path),
            tag_names=names,
        )
        return splits

    def _text(
        self,
        members: dict[str, Any],
        column: str,
        train_rows: np.ndarray,
        table: RowSources,
        where: str,
    ) -> tuple[Any, dict[str, Any], tuple[Any, dict[str, Any]] | None]:
        """The student's reader and info fields, and the teacher's own (or None)."""
        params = self.params
        assert isinstance(params, HFDiskParams)
        if params.text is None:
            raise DataError(
                f"{where}: column {column!r} holds text; say how to encode it",
                hint="set dataset.params.text.tokenizer (the teacher's model folder) or "
                "text.representation: bag_of_words",
            )
        texts = [str(t or "") for m in members.values() for t in m[column]]
        train_texts = [texts[i] for i in train_rows]
        encoder = TextEncoder(params.text, where).fit(train_texts)
        self.encoder = encoder

        def reader(chosen: TextEncoder) -> Any:
            def read(split: str, key: str, local: np.ndarray) -> Inputs:
                offset = table.offsets[table.keys.index(key)]
                return chosen.transform([texts[offset + i] for i in local])

            return read

        teacher = teacher_encoder(params.text, where)
        teacher_view = None
        if teacher is not None:
            teacher.fit(train_texts)
            teacher_view = (reader(teacher), teacher_info_fields(teacher))
        return reader(encoder), encoder.info_fields(), teacher_view


def _open_member(path: str, member: str) -> Any:
    import datasets

    loaded = datasets.load_from_disk(path)
    return loaded if member == "" else loaded[member]


def _members(params: HFDiskParams, where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Member datasets by key (``""`` for a single Dataset) and their given splits."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{where}: needs the `datasets` package", hint="pip install 'kdforge[hf]'"
        ) from None
    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_from_disk(params.path)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(
            f"{where}: not a dataset saved with save_to_disk: {exc}",
            hint="save it with Dataset.save_to_disk(path) or DatasetDict.save_to_disk(path)",
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return {"": loaded}, {"": ""}
    members: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key in loaded:
        mapped = (params.split_names or {}).get(key) or normalize_split_name(key, where)
        members[key], given[key] = loaded[key], mapped
    if not members:
        raise DataError(f"{where}: the DatasetDict has no splits")
    return members, given


def _input_column(first: Any, params: HFDiskParams, where: str) -> str:
    columns = list(first.column_names)
    if params.input_column is not None:
        if params.input_column not in columns:
            raise DataError(
                f"{where}: input_column {params.input_column!r} is not a column",
                hint=f"columns: {', '.join(columns)}",
            )
        return params.input_column
    skipped = set(params.target_columns) or {params.label_column}
    others = [c for c in columns if c not in skipped]
    if len(others) != 1:
        raise DataError(
            f"{where}: input_column not set and the input column is ambiguous: {others}",
            hint="set dataset.params.input_column",
        )
    return others[0]


def _column_kind(feature: Any) -> str:
    import datasets

    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return "text"
    return "array"


def _labels(
    members: dict[str, Any], label_column: str, where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    import datasets

    names: tuple[str, ...] | None = None
    values: list[Any] = []
    for member in members.values():
        if label_column not in member.column_names:
            values += [None] * len(member)  # e.g. an unlabeled transfer member
            continue
        feature = member.features[label_column]
        if isinstance(feature, datasets.ClassLabel):
            names = tuple(feature.names)
        values += list(member[label_column])
    if all(v is None for v in values):
        raise DataError(f"{where}: no split has the label column {label_column!r}")
    codes, found = encode_labels(values, f"{where}: {label_column}")
    if names is not None:
        if len(found) > len(names):
            raise DataError(f"{where}: labels go beyond the ClassLabel's {len(names)} names")
        return codes, names
    return codes, found


def _target_rows(
    members: dict[str, Any], columns: list[str], where: str
) -> list[tuple[str, int, np.ndarray | None]]:
    """``(member, rows, float targets (rows, len(columns)) or None)`` per member; a
    member without the columns (an unlabeled split) gives None."""
    out: list[tuple[str, int, np.ndarray | None]] = []
    for key, member in members.items():
        present = [c for c in columns if c in member.column_names]
        if not present:
            out.append((key, len(member), None))
            continue
        if len(present) != len(columns):
            missing = sorted(set(columns) - set(present))
            raise DataError(f"{where}: split {key or 'data'!r} lacks the columns {missing}")
        try:
            values = np.column_stack(
                [
                    np.asarray([np.nan if v is None else v for v in member[c]], dtype=np.float64)
                    for c in columns
                ]
            )
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: the target columns {columns} must hold numbers ({exc})"
            ) from None
        out.append((key, len(member), values))
    return out


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``hf_disk`` dataset."""
    register("hf_disk", HFDisk)
