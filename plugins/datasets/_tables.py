"""Reading CSV, TSV, JSON Lines and Parquet files into one pandas frame with splits.

Shared by the ``tabular`` and ``text`` datasets. A path with a ``{split}`` placeholder
gives one file per split; a ``split_column`` names each row's split instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdforge.errors import DataError, closest_match
from kdforge.plugins.datasets._splits import expand_split_paths, normalize_split_name

# pandas (~0.5 s to import) is imported when a table is read: plugins load at every
# registry build, most of them never read one.

__all__ = [
    "RowOrigins",
    "is_blank",
    "load_frame",
    "load_frame_with_origins",
    "read_table",
    "require_columns",
]

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_table(file: Path, where: str) -> Any:
    """Read one file into a ``pandas.DataFrame`` (format chosen by its suffix).

    Raises:
        DataError: unknown suffix, unreadable or malformed file, missing pyarrow.
    """
    import pandas as pd

    kind = _READERS.get(file.suffix.lower())
    if kind is None:
        raise DataError(
            f"{where}: cannot read {file.name}: unknown file type {file.suffix!r}",
            hint=f"use one of {', '.join(sorted(_READERS))}",
        )
    try:
        if kind == "csv":
            return pd.read_csv(file)
        if kind == "tsv":
            return pd.read_csv(file, sep="\t")
        if kind == "jsonl":
            return pd.read_json(file, lines=True)
        return pd.read_parquet(file)
    except ImportError as exc:
        raise DataError(
            f"{where}: reading {file.name} needs an extra package: {exc}",
            hint="pip install pyarrow",
        ) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{where}: cannot read {file}: {exc}") from None


@dataclass(frozen=True)
class RowOrigins:
    """Which file each row of a loaded frame came from, to point at a bad cell.

    Attributes:
        files: The files, in the order their rows were stacked.
        sizes: Number of rows of each file.
    """

    files: tuple[Path, ...]
    sizes: tuple[int, ...]

    def describe(self, row: int) -> str:
        """``"<file> line N"`` (CSV/TSV: after the header; JSON Lines) or ``"row N"``.

        Numbers are 1-based as an editor shows them; a CSV line number assumes one
        line per row (a quoted cell spanning lines shifts it).
        """
        start = 0
        for file, size in zip(self.files, self.sizes, strict=True):
            if row < start + size:
                local = row - start
                kind = _READERS.get(file.suffix.lower())
                if kind in ("csv", "tsv"):
                    return f"{file} line {local + 2}"  # line 1 is the header
                if kind == "jsonl":
                    return f"{file} line {local + 1}"
                return f"{file} row {local + 1}"
            start += size
        raise IndexError(f"row {row} is beyond the {start} rows read")


def load_frame(
    path: str,
    split_column: str | None,
    where: str,
    label_column: str | Sequence[str] | None = None,
    *,
    use_transfer: bool = True,
) -> tuple[Any, list[str] | None]:
    """All rows of ``path`` in one frame, and each row's given split (or None).

    Args:
        path: A file, or a pattern with ``{split}``.
        split_column: Column naming each row's split (``train``, ``validation``, ...);
            empty cells mean "no split given". Dropped from the frame.
        where: Names the dataset for error messages.
        label_column: The label column, or the target/label columns. A transfer file
            is unlabeled, so it may leave these columns out (its rows get empty labels).
        use_transfer: False skips a ``{split}`` pattern's transfer file.

    Raises:
        DataError: both a ``{split}`` pattern and a ``split_column``, an unknown split
            name, files with different columns, or an empty table.
    """
    frame, given, _ = load_frame_with_origins(
        path, split_column, where, label_column, use_transfer=use_transfer
    )
    return frame, given


def load_frame_with_origins(
    path: str,
    split_column: str | None,
    where: str,
    label_column: str | Sequence[str] | None = None,
    *,
    use_transfer: bool = True,
) -> tuple[Any, list[str] | None, RowOrigins]:
    """:func:`load_frame` plus the file of each row (:class:`RowOrigins`)."""
    import pandas as pd

    files = expand_split_paths(path, f"{where}: path", use_transfer=use_transfer)
    frames, given = [], []
    for split, file in files.items():
        frame = read_table(file, where)
        frames.append(frame)
        given += [split] * len(frame)
    origins = RowOrigins(tuple(files.values()), tuple(len(f) for f in frames))
    label_columns = [label_column] if isinstance(label_column, str) else list(label_column or [])
    _align_columns(frames, list(files), files, where, label_columns)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.empty:
        raise DataError(f"{where}: the table has no rows")
    marks: list[str] | None = given if any(given) else None
    if split_column is not None:
        if marks is not None:
            raise DataError(
                f"{where}: both a {{split}} file pattern and split_column={split_column!r}",
                hint="use one way to give the splits",
            )
        if split_column not in frame.columns:
            raise DataError(
                f"{where}: split_column {split_column!r} is not a column",
                hint=f"columns: {', '.join(map(str, frame.columns))}",
            )
        marks = [
            "" if is_blank(v) else normalize_split_name(str(v), f"{where}: column {split_column}")
            for v in frame[split_column].tolist()
        ]
        frame = frame.drop(columns=[split_column])
    return frame.reset_index(drop=True), marks, origins


def _align_columns(
    frames: list[Any],
    splits: list[str],
    files: dict[str, Path],
    where: str,
    label_columns: list[str],
) -> None:
    """Refuse split files whose columns differ, except a transfer file without labels."""
    labeled = [
        set(map(str, f.columns)) for f, s in zip(frames, splits, strict=True) if s != "transfer"
    ]
    expected = labeled[0] if labeled else set()
    for frame, split in zip(frames, splits, strict=True):
        have = set(map(str, frame.columns))
        unlabeled = expected - set(label_columns)
        if split == "transfer" and label_columns and have == unlabeled != expected:
            for column in label_columns:
                frame[column] = None  # unlabeled rows, as the docs promise
            have = expected
        if have != expected:
            first = next(s for s in splits if s != "transfer")
            missing, extra = sorted(expected - have), sorted(have - expected)
            raise DataError(
                f"{where}: the split files have different columns: {files[split].name} "
                f"lacks {missing} and adds {extra} compared with {files[first].name}",
                hint="give every split file the same columns"
                + (
                    f" (a transfer file may leave out the label column {label_columns[0]!r})"
                    if len(label_columns) == 1
                    else f" (a transfer file may leave out the label columns {label_columns})"
                    if label_columns
                    else ""
                ),
            )


def is_blank(value: Any) -> bool:
    """True for None, NaN, pandas.NA and empty or whitespace-only strings."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(value != value)
    except TypeError:
        return True


def require_columns(frame: Any, names: list[str], where: str, key: str) -> None:
    """Raise a DataError naming ``key`` when a column in ``names`` is missing."""

    columns = [str(c) for c in frame.columns]
    for name in names:
        if name not in columns:
            suggestion = closest_match(name, columns)
            raise DataError(
                f"{where}: {key}: no column {name!r}",
                hint=(f"did you mean {suggestion!r}? " if suggestion else "")
                + f"columns: {', '.join(columns)}",
            )
