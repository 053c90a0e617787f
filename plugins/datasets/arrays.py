"""Dataset ``arrays``: NumPy inputs and labels from ``.npz`` or ``.npy`` files.

* ``path: data.npz`` with arrays ``x`` and ``y`` (names set by ``x_key``/``y_key``),
  or with given splits ``x_train, y_train, x_val, y_val, x_test, y_test`` (val/test
  optional) and ``x_transfer`` (unlabeled, no ``y`` needed);
* ``path: inputs.npy`` plus ``labels: labels.npy``;
* a ``{split}`` placeholder gives one file per split: ``path: data/x_{split}.npy``,
  ``labels: data/y_{split}.npy`` (a transfer file needs no labels).

Labels are integers ``0..K-1`` (``-1`` = unlabeled) or strings (``task:
classification``, the default). ``task: regression`` reads float targets ``(n, R)`` (or
``(n,)``: one target), ``task: multilabel`` 0/1 labels ``(n, L)``; NaN marks an unknown
value and a row of NaN an unlabeled example; ``target_names`` names the columns. A
``y`` that does not fit the task (rows of values for classification, non-integer
floats for classification, text for regression, a 2 in a multilabel array) is refused,
saying what it holds. Input dtype ``auto``
keeps signed integer inputs as int64 (token ids) and turns everything else into
float32. ``.npy`` inputs are memory-mapped, so data bigger than memory streams from
disk; ``.npz`` members cannot be memory-mapped and are loaded whole.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

import kdforge
from kdforge.batching import apply_storage
from kdforge.data import UNLABELED, DataInfo, DataSplits, Inputs, LazyInputs
from kdforge.errors import DataError
from kdforge.interfaces import DatasetPlugin
from kdforge.plugins.datasets._splits import (
    SPLIT_NAMES,
    FileDatasetParams,
    RowSources,
    assign_splits,
    concat_sources,
    dataset_name,
    encode_labels,
    expand_split_paths,
    make_splits,
)
from kdforge.plugins.datasets._targets import (
    POSITION_TASKS,
    TaskName,
    float_targets,
    make_float_splits,
    make_position_splits,
    position_targets,
    refuse_rows_for_classification,
    row_codes,
    unstratified,
)

#: One source of rows: ``(key, inputs, labels or None, given split or "")``.
Source = tuple[str, np.ndarray, np.ndarray | None, str]


class ArraysParams(FileDatasetParams):
    """Parameters of the ``arrays`` dataset."""

    path: str = Field(description="A .npz or .npy file of inputs; may hold a {split} placeholder.")
    labels: str | None = Field(
        None, description="The .npy labels file when path is a .npy (may hold {split})."
    )
    x_key: str = Field("x", description="Name of the inputs array in a .npz.")
    y_key: str = Field("y", description="Name of the labels array in a .npz.")
    input_dtype: Literal["auto", "float32", "int64"] = Field(
        "auto", description="auto: signed integers stay int64 (token ids), the rest float32."
    )
    scale: float | None = Field(
        None, description="Multiply float inputs by this (e.g. 0.00392 for 0-255 pixels)."
    )
    task: TaskName | Literal["token_classification", "language_modeling"] = Field(
        "classification",
        description="What y holds: classification (class ids (n,)), regression (float "
        "targets (n, R) or (n,)) or multilabel (0/1 labels (n, L)); NaN = unknown. "
        "token_classification / language_modeling: int64 (n, seq_len) per token-id input "
        "position (tag ids, or the token to predict; -1 only distilled, -2 padding).",
    )
    num_classes: int | None = Field(
        None,
        ge=1,
        description="Per-position tasks: tags, or the vocabulary size of language "
        "modeling (default: the largest id in x or y, plus one).",
    )
    pad_token_id: int | None = Field(
        None, description="Per-position tasks: the input id that marks padding."
    )
    target_names: list[str] | None = Field(
        None,
        description="Names of y's columns for regression/multilabel (default: "
        "target_0.. or label_0..).",
    )

    @model_validator(mode="after")
    def _sizes_need_positions(self) -> ArraysParams:
        if self.task not in POSITION_TASKS and (
            self.num_classes is not None or self.pad_token_id is not None
        ):
            raise ValueError(
                "num_classes and pad_token_id describe per-position targets; set task: "
                "token_classification or task: language_modeling"
            )
        return self

    @model_validator(mode="after")
    def _names_need_columns(self) -> ArraysParams:
        if self.target_names is not None and self.task == "classification":
            raise ValueError(
                "target_names names the columns of regression or multilabel targets; "
                "set task: regression or task: multilabel (class names come from y)"
            )
        return self


class NpyInputs(LazyInputs):
    """Rows of a memory-mapped ``.npy`` file, read on demand."""

    def __init__(
        self, path: str, rows: np.ndarray, dtype: torch.dtype, scale: float | None
    ) -> None:
        self.path = path
        self.rows = np.asarray(rows, dtype=np.int64)
        self._dtype = dtype
        self.scale = scale
        self._array: np.ndarray | None = None
        self._shape = tuple(int(s) for s in self.array().shape[1:])

    def __getstate__(self) -> dict[str, Any]:
        # The memory map is reopened in each process (Ray trial, DataLoader worker).
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def array(self) -> np.ndarray:
        """The memory-mapped array (opened once per process)."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._array

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one row."""
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        """float32 or int64."""
        return self._dtype

    def __len__(self) -> int:
        return len(self.rows)

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Read rows from the memory map (sorted, then put back in the order asked)."""
        wanted = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(wanted, kind="stable")
        block = np.empty((len(wanted), *self._shape), dtype=self.array().dtype)
        block[order] = self.array()[wanted[order]]
        return _to_tensor(block, self._dtype, self.scale)

    def fingerprint(self) -> str:
        """Hash of the file's path, size, modification time, the rows and the dtype."""
        stat = os.stat(self.path)
        digest = hashlib.sha256(
            f"{self.path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self._dtype}\0{self.scale}".encode()
        )
        digest.update(self.rows.tobytes())
        return digest.hexdigest()[:16]


class Arrays(DatasetPlugin):
    """NumPy arrays from .npz/.npy files (.npy memory-mapped for data bigger than memory)."""

    name = "arrays"
    Params = ArraysParams

    def load(self, seed: int) -> DataSplits:
        """Read the arrays, split them, and hold them in memory or stream them."""
        params = self.params
        assert isinstance(params, ArraysParams)
        where = f"dataset 'arrays' (path={params.path})"
        sources = self._sources(params, where)
        dtypes = {_target_dtype(a.dtype, params.input_dtype) for _, a, _, _ in sources}
        shapes = {tuple(a.shape[1:]) for _, a, _, _ in sources}
        if len(shapes) > 1 or len(dtypes) > 1:
            raise DataError(f"{where}: the splits' inputs differ in shape or dtype: {shapes}")
        dtype = dtypes.pop()
        given = [g for _, a, _, g in sources for _ in range(len(a))]
        targets: np.ndarray | None = None
        positions: np.ndarray | None = None
        vocab: int | None = None
        if params.task in POSITION_TASKS:
            positions = position_targets([(k, x, y) for k, x, y, _ in sources], params.task, where)
            vocab, outputs = _position_sizes(sources, positions, params, where)
            classes = tuple(str(i) for i in range(outputs))
            codes = np.where((positions >= 0).any(axis=1), 0, UNLABELED).astype(np.int64)
            rows = assign_splits(
                codes, given if any(given) else None, unstratified(params), seed, where
            )
        elif params.task == "classification":
            refuse_rows_for_classification([(k, y) for k, _, y, _ in sources], where)
            labels, classes = encode_labels(_all_labels(sources), where)
            rows = assign_splits(labels, given if any(given) else None, params, seed, where)
        else:
            targets, classes = float_targets(
                [(k, len(x), y) for k, x, y, _ in sources],
                params.task,
                params.target_names,
                where,
            )
            rows = assign_splits(
                row_codes(targets), given if any(given) else None, unstratified(params), seed, where
            )
        table = RowSources([k for k, _, _, _ in sources], [len(a) for _, a, _, _ in sources])
        arrays = {k: a for k, a, _, _ in sources}

        def read(key: str, local: np.ndarray) -> Inputs:
            array = arrays[key]
            if isinstance(array, np.memmap) and array.filename:
                return NpyInputs(str(array.filename), local, dtype, params.scale)
            return _to_tensor(np.asarray(array[local]), dtype, params.scale)

        info = DataInfo(
            name=dataset_name(params.path),
            input_shape=shapes.pop(),
            num_classes=len(classes),
            input_dtype=str(dtype).removeprefix("torch."),
            # A vocabulary's ids need no names; tags keep theirs from num_classes.
            class_names=None if params.task == "language_modeling" else classes,
            task=params.task,
            vocab_size=vocab,
            pad_token_id=params.pad_token_id if positions is not None else None,
        )
        if positions is not None:
            splits = make_position_splits(
                info, rows, positions, lambda _, picked: concat_sources(table, picked, read)
            )
        elif targets is None:
            splits = make_splits(
                info, rows, labels, lambda _, picked: concat_sources(table, picked, read)
            )
        else:
            splits = make_float_splits(
                info, rows, targets, lambda _, picked: concat_sources(table, picked, read)
            )
        return apply_storage(
            splits,
            storage=params.storage,
            memory_limit_mb=params.memory_limit_mb,
            num_workers=params.num_workers,
        )

    @staticmethod
    def _sources(params: ArraysParams, where: str) -> list[Source]:
        """``(key, inputs, labels or None, given split or "")`` per source file/member."""
        keep = params.use_transfer
        files = expand_split_paths(params.path, f"{where}: path", use_transfer=keep)
        label_files = (
            expand_split_paths(params.labels, f"{where}: labels", use_transfer=keep)
            if params.labels
            else {}
        )
        out = []
        for split, file in files.items():
            if file.suffix == ".npz":
                out += _npz_sources(file, split, params, where)
                continue
            if file.suffix != ".npy":
                raise DataError(f"{where}: {file} is neither .npz nor .npy")
            x = _open(file, where, mmap=True)
            label_file = label_files.get(split)
            if label_file is None and split != "transfer":
                raise DataError(
                    f"{where}: no labels for {file.name}",
                    hint="set dataset.params.labels to the .npy of labels (same {split} pattern)",
                )
            y = _open(label_file, where, mmap=False) if label_file else None
            out.append((split or "all", x, y, "" if split == "" else split))
        for key, x, y, _ in out:
            if y is not None and len(y) != len(x):
                raise DataError(f"{where}: {key}: {len(x)} inputs but {len(y)} labels")
        return out


def _npz_sources(file: Path, split: str, params: ArraysParams, where: str) -> list[Source]:
    with np.load(file, allow_pickle=False) as archive:
        members = set(archive.files)
        xk, yk = params.x_key, params.y_key
        if split == "" and f"{xk}_train" in members:
            names = [s for s in SPLIT_NAMES if f"{xk}_{s}" in members]
            return [
                (
                    s,
                    archive[f"{xk}_{s}"],
                    archive[f"{yk}_{s}"] if f"{yk}_{s}" in members else None,
                    s,
                )
                for s in names
            ]
        if xk not in members or (yk not in members and split != "transfer"):
            raise DataError(
                f"{where}: {file.name} holds {sorted(members)}, expected {xk!r} and {yk!r}",
                hint="set x_key/y_key, or store x_train/y_train (x_val, x_test, ...)",
            )
        y = archive[yk] if yk in members else None
        return [(split or "all", archive[xk], y, split)]


def _position_sizes(
    sources: list[Source], targets: np.ndarray, params: ArraysParams, where: str
) -> tuple[int, int]:
    """``(input vocabulary size, outputs per position)`` of per-position data.

    Language modeling predicts input tokens: both are the vocabulary (``num_classes``,
    else the largest id seen, plus one). Tagging reads any ids and predicts tags.

    Raises:
        DataError: an id at or above a given ``num_classes``.
    """
    vocab = 1 + max(
        [int(np.max(x)) for _, x, _, _ in sources if x.size and x.dtype.kind in "iu"] or [0]
    )
    top = int(targets.max()) + 1 if targets.size else 0
    if params.task == "language_modeling":
        size = params.num_classes or max(vocab, top)
        if max(vocab, top) > size:
            raise DataError(
                f"{where}: token ids go up to {max(vocab, top) - 1}, but num_classes "
                f"(the vocabulary size) is {size}"
            )
        return size, size
    classes = params.num_classes or top
    if top > classes:
        raise DataError(f"{where}: tags go up to {top - 1}, but num_classes is {classes}")
    return vocab, classes


def _all_labels(sources: list[Source]) -> Any:
    """Labels of every source in order; missing ones are -1 (integers) or None."""
    given = [y for _, _, y, _ in sources if y is not None]
    if all(y.dtype.kind in "iu" for y in given):
        return np.concatenate(
            [
                np.full(len(x), UNLABELED) if y is None else y.astype(np.int64)
                for _, x, y, _ in sources
            ]
        )
    out: list[Any] = []
    for _, x, y, _ in sources:
        out += [None] * len(x) if y is None else y.tolist()
    return out


def _open(file: Path, where: str, *, mmap: bool) -> np.ndarray:
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: cannot read {file}: {exc}") from None


def _target_dtype(dtype: np.dtype, wanted: str) -> torch.dtype:
    if wanted == "float32":
        return torch.float32
    if wanted == "int64":
        return torch.int64
    return torch.int64 if dtype.kind == "i" else torch.float32


def _to_tensor(block: np.ndarray, dtype: torch.dtype, scale: float | None) -> torch.Tensor:
    if dtype == torch.int64:
        return torch.from_numpy(np.ascontiguousarray(block, dtype=np.int64))
    array = np.ascontiguousarray(block, dtype=np.float32)
    if scale is not None:
        array = array * np.float32(scale)
    return torch.from_numpy(array)


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``arrays`` dataset."""
    register("arrays", Arrays)
