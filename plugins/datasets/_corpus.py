"""Reading a text corpus as documents: plain-text files, JSONL, saved HF datasets, the stdlib.

Each reader yields documents (strings) in a fixed order, so that the same files give
the same corpus; the ``text_corpus`` dataset tokenizes them into blocks.

* plain text (any file not named ``*.jsonl``/``*.ndjson``): split into documents by
  ``text_unit``: the whole file, its blank-line separated paragraphs, or its lines;
* JSONL (``*.jsonl``, ``*.ndjson``): one JSON object per line, the document in ``field``;
* a folder written by ``save_to_disk`` (a ``Dataset`` or every member of a
  ``DatasetDict``, in key order): the document in ``column``;
* ``source: python_stdlib``: the docstrings of the installed Python standard library,
  parsed with :mod:`ast` (nothing is imported): a corpus that needs no files.
"""

from __future__ import annotations

import ast
import glob
import json
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from kdforge.errors import DataError

__all__ = ["TextUnit", "expand_paths", "read_documents", "stdlib_docstrings"]

TextUnit = Literal["file", "paragraph", "line"]
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
# Never part of a docstring corpus: the test suite and IDLE are large and repetitive.
_STDLIB_SKIPPED = frozenset({"test", "idlelib", "site-packages"})


def expand_paths(patterns: Sequence[str], where: str) -> list[Path]:
    """Files and saved-dataset folders matched by ``patterns`` (paths or globs), sorted
    per pattern, each once.

    Raises:
        DataError: no pattern given, or a pattern that matches nothing.
    """
    if not patterns:
        raise DataError(
            f"{where}: no paths given",
            hint="set dataset.params.paths to text/JSONL files or globs, or source: python_stdlib",
        )
    found: list[Path] = []
    for pattern in patterns:
        expanded = str(Path(pattern).expanduser())
        matches = sorted(glob.glob(expanded, recursive=True)) if glob.has_magic(expanded) else []
        if not glob.has_magic(expanded) and Path(expanded).exists():
            matches = [expanded]
        if not matches:
            raise DataError(
                f"{where}: no files matched {pattern!r}",
                hint="give existing files, folders saved with save_to_disk, or globs "
                "such as 'corpus/**/*.txt'",
            )
        for match in matches:
            path = Path(match)
            if path not in found and (path.is_file() or _is_saved_dataset(path)):
                found.append(path)
    if not found:
        raise DataError(
            f"{where}: {list(patterns)} matched only folders that are no saved dataset",
            hint="match the files themselves, e.g. 'corpus/**/*.txt'",
        )
    return found


def read_documents(
    paths: Sequence[Path], *, text_unit: TextUnit, field: str, column: str, where: str
) -> Iterator[str]:
    """The documents of every path in order (empty ones skipped).

    Raises:
        DataError: an unreadable file, a JSONL line that is no object with ``field``
            (named ``file:line``), a saved dataset without ``column``.
    """
    for path in paths:
        if path.is_dir():
            yield from _hf_documents(path, column, where)
        elif path.suffix.lower() in _JSONL_SUFFIXES:
            yield from _jsonl_documents(path, field, where)
        else:
            yield from _text_documents(path, text_unit, where)


def _text_documents(path: Path, unit: TextUnit, where: str) -> Iterator[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{where}: cannot read {path} as UTF-8 text: {exc}",
            hint="give UTF-8 text files (or .jsonl with a field)",
        ) from None
    if unit == "file":
        parts = [text]
    elif unit == "line":
        parts = text.splitlines()
    else:  # paragraphs: separated by one or more blank lines
        parts, current = [], []
        for line in text.splitlines():
            if line.strip():
                current.append(line)
            elif current:
                parts.append("\n".join(current))
                current = []
        if current:
            parts.append("\n".join(current))
    for part in parts:
        if part.strip():
            yield part.strip()


def _jsonl_documents(path: Path, field: str, where: str) -> Iterator[str]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{where}: cannot read {path}: {exc}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where}: {path}:{number} is not valid JSON ({exc.msg})",
                    hint="JSONL holds one JSON object per line",
                ) from None
            if not isinstance(record, dict) or field not in record:
                raise DataError(
                    f"{where}: {path}:{number} has no field {field!r}",
                    hint="set dataset.params.field to the key holding the text",
                )
            value = record[field]
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(
                    f"{where}: {path}:{number}: field {field!r} holds "
                    f"{type(value).__name__}, not text"
                )
            if value.strip():
                yield value


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_info.json", "dataset_dict.json")
    )


def _hf_documents(path: Path, column: str, where: str) -> Iterator[str]:
    try:
        # datasets belongs to the optional [hf] extra: imported for a saved dataset only.
        import datasets
    except ImportError:
        raise DataError(
            f"{where}: reading {path} needs the `datasets` package",
            hint="pip install 'kdforge[hf]'",
        ) from None
    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(
            f"{where}: {path} is not a dataset saved with save_to_disk: {exc}"
        ) from None
    members = [loaded] if isinstance(loaded, datasets.Dataset) else [loaded[k] for k in loaded]
    for member in members:
        if column not in member.column_names:
            raise DataError(
                f"{where}: {path} has no column {column!r}",
                hint=f"set dataset.params.column to one of {', '.join(member.column_names)}",
            )
        for value in member[column]:
            if isinstance(value, str) and value.strip():
                yield value


def stdlib_docstrings(packages: Sequence[str] = (), min_chars: int = 40) -> Iterator[str]:
    """Docstrings of the installed standard library, in a fixed (path) order.

    Args:
        packages: Only files under these top-level names (e.g. ``("json", "email")``);
            all of the standard library (but its tests and IDLE) when empty.
        min_chars: Skip docstrings shorter than this.

    Yields:
        One docstring per module, class or function, whitespace collapsed.
    """
    # kdforge.testing.lm.python_docstrings reads the same corpus for tests; the layers
    # forbid plugins and the test kit to import each other, so the few lines repeat.
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py")) + sorted(root.glob("*/**/*.py"))
    for file in files:
        top = file.relative_to(root).parts[0].removesuffix(".py")
        if (packages and top not in packages) or top in _STDLIB_SKIPPED:
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        nodes = [tree] + [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                yield " ".join(doc.split())
