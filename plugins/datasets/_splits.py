"""What the file-based dataset plugins share: parameters, labels, splits, split paths.

Splitting rules, the same for every built-in file dataset:

* **Given splits are used as they are.** Splits come from the files (a ``{split}``
  placeholder in the path, split sub-folders, a saved ``DatasetDict``) or from a
  ``split_column``. A missing ``val`` (or ``test``) split is carved out of ``train``
  with ``val_fraction`` (or ``test_fraction``) of its rows, seeded and stratified.
* **Otherwise** all labeled rows are split into train/val/test with a seeded,
  stratified split (``val_fraction`` and ``test_fraction`` of the rows).
* **Transfer**: rows without a label (an empty target, a ``transfer`` split or folder)
  and ``transfer_fraction`` of the labeled training rows (labels hidden) form the
  unlabeled ``transfer`` split: the student learns the teacher's soft targets there.
  ``use_transfer: false`` leaves the data's unlabeled rows out (a transfer file is not
  read at all).

Stratification falls back to a plain seeded split (with a warning) when a class has
too few rows to appear on both sides.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from kdforge.batching import concat
from kdforge.data import UNLABELED, DataInfo, DataSplits, Inputs, Split
from kdforge.errors import DataError
from kdforge.interfaces import PluginParams
from kdforge.storage import cached_copy, is_remote
from kdforge.storage import exists as remote_exists

# scikit-learn (~1 s to import) is imported when a split is stratified: plugins load at
# every registry build, most of them never split.

__all__ = [
    "SPLIT_NAMES",
    "FileDatasetParams",
    "RowSources",
    "SplitRows",
    "assemble_splits",
    "assign_splits",
    "concat_sources",
    "dataset_name",
    "encode_labels",
    "expand_split_paths",
    "make_splits",
    "normalize_split_name",
    "with_teacher_view",
]

logger = logging.getLogger("kdforge.data")

SPLIT_NAMES = ("train", "val", "test", "transfer")
SplitName = Literal["train", "val", "test", "transfer"]
_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "transfer": "transfer",
    "unlabeled": "transfer",
    "unlabelled": "transfer",
    "unsupervised": "transfer",
}
_PLACEHOLDER = "{split}"


class FileDatasetParams(PluginParams):
    """Split and storage parameters shared by every file-based dataset."""

    val_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="Share of rows for validation when no val split is given."
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="Share of rows for test when no test split is given."
    )
    transfer_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of the labeled training rows whose labels are hidden (transfer split).",
    )
    use_transfer: bool = Field(
        True,
        description="Use the unlabeled rows the data holds (a transfer file or folder, a "
        "transfer split, rows without a label) as the transfer split; false leaves them "
        "out, e.g. a transfer.npz a {split} pattern would pick up.",
    )
    stratify: bool = Field(True, description="Keep class shares equal across random splits.")
    storage: Literal["auto", "memory", "stream"] = Field(
        "auto",
        description="auto: in memory below memory_limit_mb, streamed above; or force one.",
    )
    memory_limit_mb: float | None = Field(
        None, gt=0, description="In-memory limit for storage=auto (default: an eighth of RAM)."
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes when streaming.")

    @model_validator(mode="after")
    def _check_fractions(self) -> FileDatasetParams:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction ({self.val_fraction + self.test_fraction:g}) "
                "must stay below 0.9 to leave training rows"
            )
        if not self.use_transfer and self.transfer_fraction > 0:
            raise ValueError(
                f"use_transfer is false but transfer_fraction is {self.transfer_fraction:g}: "
                "hiding labels makes a transfer split; set one of them"
            )
        return self


def normalize_split_name(raw: str, where: str) -> SplitName:
    """Map ``validation``/``dev``/``unlabeled``/... to ``train|val|test|transfer``.

    Raises:
        DataError: an unknown name (``where`` says which file or column it came from).
    """
    name = _ALIASES.get(str(raw).strip().lower())
    if name is None:
        raise DataError(
            f"{where}: unknown split name {raw!r}",
            hint="split names are train, val (validation, dev), test, transfer (unlabeled)",
        )
    return name  # type: ignore[return-value]


def expand_split_paths(path: str, where: str, *, use_transfer: bool = True) -> dict[str, Path]:
    """Files for each split when ``path`` holds a ``{split}`` placeholder.

    Returns ``{"": path}`` without a placeholder; otherwise the existing files among
    ``train``/``val``/``test``/``transfer`` (also ``validation``, ``dev``, ...); a
    transfer file is not even opened when ``use_transfer`` is False.

    Raises:
        DataError: a missing file, or a placeholder that matches no train file.
    """
    if is_remote(path):
        return _remote_split_paths(path, where, use_transfer=use_transfer)
    if _PLACEHOLDER not in path:
        file = Path(path).expanduser()
        if not file.exists():
            raise DataError(f"{where}: {file} does not exist")
        return {"": file}
    found: dict[str, Path] = {}
    for alias, name in _ALIASES.items():
        if name == "transfer" and not use_transfer:
            continue
        candidate = Path(path.replace(_PLACEHOLDER, alias)).expanduser()
        if candidate.exists() and name not in found:
            found[name] = candidate
    if "train" not in found:
        raise DataError(
            f"{where}: no training file matches {path!r}",
            hint=f"expected {path.replace(_PLACEHOLDER, 'train')!r} (and val/test/transfer)",
        )
    return found


def _remote_split_paths(uri: str, where: str, *, use_transfer: bool) -> dict[str, Path]:
    """:func:`expand_split_paths` for ``s3://...``: each file downloaded once (cached)."""
    if _PLACEHOLDER not in uri:
        return {"": cached_copy(uri, where)}
    found: dict[str, Path] = {}
    for alias, name in _ALIASES.items():
        if (name == "transfer" and not use_transfer) or name in found:
            continue
        candidate = uri.replace(_PLACEHOLDER, alias)
        if remote_exists(candidate, where):
            found[name] = cached_copy(candidate, where)
    if "train" not in found:
        raise DataError(
            f"{where}: no training file matches {uri!r}",
            hint=f"expected {uri.replace(_PLACEHOLDER, 'train')!r} (and val/test/transfer)",
        )
    return found


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(value != value)  # NaN is the one value unequal to itself
    except TypeError:
        return True  # pandas.NA: comparing it gives NA, whose truth value is undefined


def encode_labels(values: Sequence[Any], where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class codes (``-1`` where the label is missing) and class names.

    Non-negative integer labels (or integral floats) keep their values, so class ``k``
    stays class ``k`` (names ``"0".."K-1"``); a ``-1`` label means unlabeled. Other
    labels (strings) are numbered in sorted order.

    Raises:
        DataError: negative integers other than -1, or no labeled row at all.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return _encode_int_array(values.astype(np.int64), where)
    raw = list(values)
    present = [v for v in raw if not _missing(v)]
    if not present:
        raise DataError(f"{where}: no row has a label")
    numeric = all(isinstance(v, int | float | np.integer | np.floating) for v in present)
    if numeric and all(float(v).is_integer() for v in present):
        ints = np.array([UNLABELED if _missing(v) else int(v) for v in raw], dtype=np.int64)
        return _encode_int_array(ints, where)
    names = sorted({str(v) for v in present if not (numeric and float(v) == UNLABELED)})
    index = {name: i for i, name in enumerate(names)}
    codes = np.array(
        [UNLABELED if _missing(v) or str(v) not in index else index[str(v)] for v in raw],
        dtype=np.int64,
    )
    return codes, tuple(names)


def _encode_int_array(ints: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if len(ints) and int(ints.min()) < UNLABELED:
        raise DataError(
            f"{where}: negative label {int(ints.min())}",
            hint="class labels are 0..K-1 (or strings); -1 or empty means unlabeled",
        )
    top = int(ints.max()) if len(ints) else -1
    if top < 0:
        raise DataError(f"{where}: no row has a label")
    return ints, tuple(str(i) for i in range(top + 1))


@dataclass
class SplitRows:
    """Row numbers of each split (sorted); ``transfer`` is None when empty."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    transfer: np.ndarray | None


def _split_off(
    rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int, stratify: bool, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into ``(kept, taken)`` with ``fraction`` of them taken."""
    from sklearn.model_selection import train_test_split

    if len(rows) < 2:
        raise DataError(
            f"{where}: {len(rows)} labeled row(s) cannot be split further",
            hint="add rows, or give the val/test splits explicitly",
        )
    strata = labels[rows] if stratify else None
    try:
        kept, taken = train_test_split(rows, test_size=fraction, stratify=strata, random_state=seed)
    except ValueError as exc:
        if strata is None:
            raise DataError(f"{where}: cannot split {len(rows)} rows: {exc}") from None
        logger.warning("%s: stratified split impossible (%s); splitting without strata", where, exc)
        kept, taken = train_test_split(rows, test_size=fraction, random_state=seed)
    return np.sort(kept), np.sort(taken)


def assign_splits(
    labels: np.ndarray,
    given: Sequence[str] | np.ndarray | None,
    params: FileDatasetParams,
    seed: int,
    where: str,
) -> SplitRows:
    """Decide the split of every row (see the module docstring for the rules).

    Args:
        labels: Class codes per row, ``-1`` for unlabeled rows.
        given: Per row ``"train"``/``"val"``/``"test"``/``"transfer"`` or ``""`` (no
            split given); None when no row has one.
        params: Fractions and stratification.
        seed: Seeds every random split.
        where: Names the dataset for error messages.

    Raises:
        DataError: rows without a split next to rows with one, unlabeled val/test rows,
            a missing train split, or a split that would be empty.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    marks = np.full(n, "", dtype=object) if given is None else np.asarray(given, dtype=object)
    by_name = {name: np.flatnonzero(marks == name) for name in SPLIT_NAMES}
    unassigned = np.flatnonzero(marks == "")
    transfer_parts = [by_name["transfer"]]
    given_main = [name for name in ("train", "val", "test") if len(by_name[name])]
    if given_main:
        if len(unassigned):
            raise DataError(
                f"{where}: {len(unassigned)} rows have no split while others do",
                hint="give every row a split (train/val/test/transfer), or none",
            )
        if "train" not in given_main:
            raise DataError(f"{where}: splits {given_main} are given but no train split")
        for name in ("val", "test"):
            unlabeled = int((labels[by_name[name]] == UNLABELED).sum())
            if unlabeled:
                raise DataError(
                    f"{where}: {unlabeled} rows of the given {name} split have no label",
                    hint="val and test rows need labels; put unlabeled rows in transfer",
                )
        train_rows = by_name["train"]
        transfer_parts.append(train_rows[labels[train_rows] == UNLABELED])
        train = train_rows[labels[train_rows] != UNLABELED]
        val, test = by_name["val"], by_name["test"]
        if not len(val):
            train, val = _split_off(
                train, labels, params.val_fraction, seed, params.stratify, where
            )
        if not len(test):
            train, test = _split_off(
                train, labels, params.test_fraction, seed + 1, params.stratify, where
            )
    else:
        transfer_parts.append(unassigned[labels[unassigned] == UNLABELED])
        pool = unassigned[labels[unassigned] != UNLABELED]
        holdout = params.val_fraction + params.test_fraction
        train, rest = _split_off(pool, labels, holdout, seed, params.stratify, where)
        val, test = _split_off(
            rest, labels, params.test_fraction / holdout, seed, params.stratify, where
        )
    if params.transfer_fraction > 0:
        train, hidden = _split_off(
            train, labels, params.transfer_fraction, seed + 2, params.stratify, where
        )
        transfer_parts.append(hidden)
    for name, rows in (("train", train), ("val", val), ("test", test)):
        if not len(rows):
            raise DataError(
                f"{where}: the {name} split is empty",
                hint="add labeled rows or change val_fraction/test_fraction",
            )
    if not params.use_transfer:  # the data's unlabeled rows are left out
        transfer_parts = [np.zeros(0, dtype=np.int64)]
    transfer = np.sort(np.concatenate(transfer_parts)).astype(np.int64)
    return SplitRows(
        train=np.sort(train).astype(np.int64),
        val=np.sort(val).astype(np.int64),
        test=np.sort(test).astype(np.int64),
        transfer=transfer if len(transfer) else None,
    )


@dataclass
class RowSources:
    """Global row numbers over several sources (files, arrays, dataset members).

    Attributes:
        keys: One key per source, in order.
        sizes: Number of rows of each source.
    """

    keys: list[str]
    sizes: list[int]

    @property
    def offsets(self) -> np.ndarray:
        """Global number of each source's first row (plus the total at the end)."""
        return np.cumsum([0, *self.sizes])

    def locate(self, rows: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``(source key, local rows)`` for the global ``rows``, in the given order.

        Consecutive runs of one source are grouped; sorted ``rows`` give one group per
        source.
        """
        offsets = self.offsets
        source = np.searchsorted(offsets, rows, side="right") - 1
        groups: list[tuple[str, np.ndarray]] = []
        start = 0
        for stop in [*np.flatnonzero(np.diff(source)) + 1, len(rows)]:
            if stop > start:
                number = int(source[start])
                groups.append((self.keys[number], rows[start:stop] - offsets[number]))
            start = stop
        return groups


def make_splits(
    info: DataInfo,
    rows: SplitRows,
    labels: np.ndarray,
    inputs_for: Callable[[str, np.ndarray], Inputs],
) -> DataSplits:
    """Build :class:`DataSplits` from row numbers (transfer labels become ``-1``).

    Args:
        info: The dataset description.
        rows: Row numbers per split.
        labels: Class codes per global row.
        inputs_for: ``(split name, sorted global rows) -> inputs`` of those rows.
    """
    labels = np.asarray(labels, dtype=np.int64)

    def split(name: str, picked: np.ndarray, hide: bool) -> Split:
        y = np.full(len(picked), UNLABELED, dtype=np.int64) if hide else labels[picked]
        return Split(inputs_for(name, picked), torch.from_numpy(y))

    return assemble_splits(info, rows, split)


def assemble_splits(
    info: DataInfo, rows: SplitRows, split: Callable[[str, np.ndarray, bool], Split]
) -> DataSplits:
    """The splits of ``rows``; ``split(name, rows, hide_labels)`` builds each (transfer
    rows hide their labels)."""
    return DataSplits(
        info=info,
        train=split("train", rows.train, False),
        val=split("val", rows.val, False),
        test=split("test", rows.test, False),
        transfer=split("transfer", rows.transfer, True) if rows.transfer is not None else None,
    )


def with_teacher_view(
    splits: DataSplits,
    rows: SplitRows,
    inputs_for: Callable[[str, np.ndarray], Inputs],
    info_fields: dict[str, Any],
) -> DataSplits:
    """``splits`` with the teacher's own view of every split (``Split.teacher_x``).

    Args:
        splits: Splits built from ``rows`` (student inputs in ``x``).
        rows: The row numbers they were built from.
        inputs_for: ``(split name, sorted global rows) -> teacher inputs``.
        info_fields: The ``DataInfo.teacher_*`` fields describing that view.
    """

    def viewed(name: str, split: Split | None, picked: np.ndarray | None) -> Split | None:
        if split is None or picked is None:
            return split
        return Split(split.x, split.y, inputs_for(name, picked))

    return DataSplits(
        info=replace(splits.info, **info_fields),
        train=viewed("train", splits.train, rows.train),  # type: ignore[arg-type]
        val=viewed("val", splits.val, rows.val),  # type: ignore[arg-type]
        test=viewed("test", splits.test, rows.test),  # type: ignore[arg-type]
        transfer=viewed("transfer", splits.transfer, rows.transfer),
    )


def concat_sources(
    sources: RowSources, picked: np.ndarray, read: Callable[[str, np.ndarray], Inputs]
) -> Inputs:
    """Inputs of global rows ``picked`` built per source with ``read`` and concatenated."""
    groups = sources.locate(picked)
    parts = [read(key, local) for key, local in groups]
    if not parts:
        return read(sources.keys[0], np.zeros(0, dtype=np.int64))
    return parts[0] if len(parts) == 1 else concat(parts)


def dataset_name(path: str | Path) -> str:
    """A short dataset name for reports: the file stem, or the folder of a pattern."""
    file = Path(str(path))
    text = file.parent.name if _PLACEHOLDER in file.name else (file.stem or file.name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.") or "data"
