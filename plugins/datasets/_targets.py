"""Float targets of the regression and multilabel tasks, shared by the file datasets.

Classification datasets give int64 class ids ``(n,)`` with ``-1`` for unlabeled rows.
Regression and multilabel datasets give float32 rows ``(n, R)`` (or ``(n, L)``) with
NaN where a value is unknown; a row of NaN is an unlabeled example. The split rules of
:mod:`kdforge.plugins.datasets._splits` work on class codes, so these helpers turn the
rows into codes for :func:`assign_splits` (0: the row holds a value, ``-1``: it holds
none) and build the splits with the rows themselves, never stratified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from kdforge.data import UNLABELED, DataInfo, DataSplits, Inputs, Split
from kdforge.errors import DataError
from kdforge.plugins.datasets._splits import FileDatasetParams, SplitRows, assemble_splits

__all__ = [
    "POSITION_TASKS",
    "TASKS",
    "TaskName",
    "binary_values",
    "check_binary_rows",
    "float_targets",
    "make_float_splits",
    "make_position_splits",
    "position_targets",
    "refuse_rows_for_classification",
    "row_codes",
    "unstratified",
]

#: The tasks a dataset's targets can be made for (``DataInfo.task``).
TASKS = ("classification", "regression", "multilabel")
TaskName = Literal["classification", "regression", "multilabel"]

#: Tasks whose targets are integer rows, one value per input position.
POSITION_TASKS = ("token_classification", "language_modeling")

_TRUE = frozenset({"1", "1.0", "true"})
_FALSE = frozenset({"0", "0.0", "false"})


def row_codes(targets: np.ndarray) -> np.ndarray:
    """Codes for :func:`assign_splits`: 0 for rows with any known value, ``-1`` for none."""
    known = ~np.isnan(targets).all(axis=1) if targets.shape[1] else np.zeros(len(targets), bool)
    return np.where(known, 0, UNLABELED).astype(np.int64)


def unstratified(params: FileDatasetParams) -> FileDatasetParams:
    """``params`` with stratification off: float rows have no classes to balance."""
    return params.model_copy(update={"stratify": False})


def make_float_splits(
    info: DataInfo,
    rows: SplitRows,
    targets: np.ndarray,
    inputs_for: Callable[[str, np.ndarray], Inputs],
) -> DataSplits:
    """:func:`make_splits` for float32 target rows (transfer rows become NaN).

    Args:
        info: The dataset description.
        rows: Row numbers per split.
        targets: ``(n, outputs)`` target rows per global row, NaN where unknown.
        inputs_for: ``(split name, sorted global rows) -> inputs`` of those rows.
    """
    targets = np.asarray(targets, dtype=np.float32)

    def split(name: str, picked: np.ndarray, hide: bool) -> Split:
        y = np.full((len(picked), targets.shape[1]), np.nan, np.float32)
        if not hide:
            y = np.ascontiguousarray(targets[picked])
        return Split(inputs_for(name, picked), torch.from_numpy(y))

    return assemble_splits(info, rows, split)


def binary_values(values: Sequence[object]) -> tuple[np.ndarray, int | None]:
    """Multilabel cells as 0.0/1.0 (NaN when blank) and the index of the first bad one.

    Accepted: 0 and 1 (integers, floats, booleans), and the strings ``0``, ``1``,
    ``true`` and ``false`` (any case, surrounding spaces ignored). Blank cells (None,
    NaN, empty strings) are unknown labels.
    """
    out = np.full(len(values), np.nan, dtype=np.float32)
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool | np.bool_):
            out[i] = float(value)
            continue
        if isinstance(value, int | float | np.integer | np.floating):
            if value != value:  # NaN: a blank cell
                continue
            if value in (0, 1):
                out[i] = float(value)
                continue
            return out, i
        text = str(value).strip().lower()
        if text in _TRUE:
            out[i] = 1.0
        elif text in _FALSE:
            out[i] = 0.0
        elif text and text not in ("nan", "<na>", "none"):
            return out, i
    return out, None


def check_binary_rows(targets: np.ndarray, where: str, what: str) -> None:
    """Refuse multilabel rows holding anything but 0, 1 or NaN.

    Raises:
        DataError: naming ``what`` (the array), the first bad row and its value.
    """
    known = ~np.isnan(targets)
    bad = known & (targets != 0) & (targets != 1)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where}: {what} have the value {targets[row, column]:g} at row {row}, "
            f"column {column} (0-based); multilabel targets are 0 or 1 (NaN: unknown)",
            hint="use task: regression for real-valued targets",
        )


def _which(key: str) -> str:
    """``the labels`` (one source) or ``the train labels``, for messages."""
    return "the labels" if key in ("", "all") else f"the {key} labels"


def _holds(y: np.ndarray) -> str:
    """What an array holds, for messages: ``float64 of shape (100, 3)``."""
    return f"{y.dtype} of shape {tuple(y.shape)}"


def refuse_rows_for_classification(
    sources: Sequence[tuple[str, np.ndarray | None]], where: str
) -> None:
    """Class ids are one integer (or string) per row: refuse rows of values, real numbers.

    Args:
        sources: ``(split or source key, labels or None)`` per source.
        where: Names the dataset for error messages.

    Raises:
        DataError: saying what the labels hold and which task fits them.
    """
    for key, y in sources:
        if y is None:
            continue
        if y.ndim != 1:
            raise DataError(
                f"{where}: {_which(key)} are {_holds(y)}, not one class per row",
                hint="set task: regression (real values) or task: multilabel (0/1 labels)",
            )
        if y.dtype.kind == "f":
            known = y[~np.isnan(y)]
            fractional = known[known != np.round(known)]
            if len(fractional):
                raise DataError(
                    f"{where}: {_which(key)} are {_holds(y)} with non-integer values "
                    f"(e.g. {float(fractional[0]):g}), not class ids",
                    hint="set task: regression for real-valued targets",
                )


def float_targets(
    sources: Sequence[tuple[str, int, np.ndarray | None]],
    task: str,
    target_names: Sequence[str] | None,
    where: str,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Regression or multilabel rows ``(n, outputs)`` of every source (NaN: unknown).

    Args:
        sources: ``(split or source key, rows, labels or None)`` per source; labels
            ``(rows,)`` (one output) or ``(rows, outputs)``; None: unlabeled rows.
        task: ``regression`` or ``multilabel``.
        target_names: Names of the outputs (default ``target_0..`` or ``label_0..``).
        where: Names the dataset for error messages.

    Returns:
        float32 targets of all rows in order, and the outputs' names.

    Raises:
        DataError: labels that are not numbers, different widths, inf, a multilabel
            value other than 0/1, no labeled row, or names that do not fit the width.
    """
    widths: set[int] = set()
    for key, _, y in sources:
        if y is None:
            continue
        if y.dtype.kind not in "biuf" or y.ndim not in (1, 2):
            raise DataError(
                f"{where}: {_which(key)} are {_holds(y)}; task {task} needs numbers, "
                f"one row of {'targets' if task == 'regression' else '0/1 labels'} per example",
                hint="task: classification reads class names and ids",
            )
        widths.add(1 if y.ndim == 1 else int(y.shape[1]))
    if not widths:
        raise DataError(f"{where}: no row has a label")
    if len(widths) != 1:
        raise DataError(f"{where}: the splits' labels have different widths: {sorted(widths)}")
    width = widths.pop()
    parts = []
    for key, rows_of_source, y in sources:
        if y is None:
            parts.append(np.full((rows_of_source, width), np.nan, dtype=np.float32))
            continue
        rows = np.asarray(y, dtype=np.float64).reshape(len(y), width)
        if task == "multilabel":
            check_binary_rows(rows, where, f"{_which(key)} ({_holds(y)})")
        elif np.isinf(rows).any():
            raise DataError(f"{where}: {_which(key)} ({_holds(y)}) contain inf")
        parts.append(rows.astype(np.float32))
    targets = np.concatenate(parts)
    if np.isnan(targets).all():
        raise DataError(f"{where}: no row has a label")
    prefix = "target" if task == "regression" else "label"
    names = tuple(target_names or [f"{prefix}_{i}" for i in range(width)])
    if len(names) != width:
        raise DataError(
            f"{where}: target_names has {len(names)} names for {width} columns of labels"
        )
    return targets, names


def position_targets(
    sources: Sequence[tuple[str, np.ndarray, np.ndarray | None]], task: str, where: str
) -> np.ndarray:
    """Per-position integer targets ``(n, seq_len)`` of every source (``-1`` rows for
    a source without labels: transfer rows, distilled at every position).

    Args:
        sources: ``(split or source key, inputs, labels or None)`` per source.
        task: ``token_classification`` or ``language_modeling``.
        where: Names the dataset for error messages.

    Raises:
        DataError: labels that are not integer rows as long as the input rows, or a
            value below -2.
    """
    parts = []
    for key, x, y in sources:
        length = int(x.shape[1]) if x.ndim == 2 else -1
        if y is None:
            parts.append(np.full((len(x), max(length, 0)), UNLABELED, dtype=np.int64))
            continue
        if y.dtype.kind not in "iu" or y.ndim != 2 or x.ndim != 2 or y.shape != x.shape:
            raise DataError(
                f"{where}: {_which(key)} are {_holds(y)} for inputs of shape "
                f"{tuple(x.shape)}; task {task} needs one integer target per input "
                "position (rows, seq_len) of token ids",
                hint="-1 marks a position only distilled, -2 padding",
            )
        if y.size and int(y.min()) < -2:
            raise DataError(f"{where}: {_which(key)} hold {int(y.min())}, below -2")
        parts.append(np.asarray(y, dtype=np.int64))
    return np.concatenate(parts) if parts else np.empty((0, 0), np.int64)


def make_position_splits(
    info: DataInfo,
    rows: SplitRows,
    targets: np.ndarray,
    inputs_for: Callable[[str, np.ndarray], Inputs],
) -> DataSplits:
    """:func:`make_splits` for per-position targets (transfer rows become ``-1``)."""

    def split(name: str, picked: np.ndarray, hide: bool) -> Split:
        y = np.ascontiguousarray(targets[picked])
        if hide:
            y = np.where(y == -2, -2, UNLABELED).astype(np.int64)  # padding stays padding
        return Split(inputs_for(name, picked), torch.from_numpy(y))

    return assemble_splits(info, rows, split)
