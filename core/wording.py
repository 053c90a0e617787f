"""How kdforge words counts and trials in what it prints, so every line says it alike.

* :func:`plural`: ``1 student``, ``3 students``, ``1,412 rows`` (one helper instead of
  ``f"{n} students"`` everywhere, which printed "1 students").
* :func:`compact_params`: ``depth=2 width[64,32] dropout=0.12``, a short rendering of a
  student's sampled parameters (``width_0``, ``width_1`` grouped as a list), the
  fallback of :meth:`kdforge.SearchSpace.describe`.
* :func:`trial_name`: ``trial 013``, the one name of a trial in the progress lines, the
  leaderboard, the result block, the report and the MLflow run names. The number is the
  order in which the searcher created the trial (0-based), so it is stable across runs
  and resumes, unlike Ray's hex trial id or the order in which trials finish.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["compact_params", "plural", "short_number", "trial_name"]

# English plurals that do not just add "s".
_IRREGULAR = {
    "batch": "batches",
    "child": "children",
    "index": "indices",
    "is": "are",
    "matrix": "matrices",
}


def plural(count: float, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, pluralised when ``count`` is not one.

    Args:
        count: The number (ints get thousands separators: ``1,412 rows``).
        word: The singular (``"student"``).
        many: The plural when it is irregular (default: ``word + "s"``, ``"es"`` after
            s/x/sh, and a few known irregular words).

    Returns:
        E.g. ``"1 student"``, ``"0 students"``, ``"2 classes"``.
    """
    number = f"{count:,}" if isinstance(count, int) else f"{count:g}"
    if count == 1:
        return f"{number} {word}"
    if many is None:
        many = _IRREGULAR.get(word)
    if many is None:
        # Not "ch": epoch -> epochs (batch -> batches is listed above).
        many = word + ("es" if word.endswith(("s", "x", "sh")) else "s")
    return f"{number} {many}"


def trial_name(number: int) -> str:
    """The name of trial ``number`` everywhere kdforge shows it: ``trial 013``."""
    return f"trial {number:03d}"


def short_number(value: Any) -> str:
    """A parameter value in few characters: ``64``, ``0.12``, ``3e-04``, ``mean``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.2g}"


_INDEXED = re.compile(r"^(.*?)_(\d+)$")


def compact_params(params: Mapping[str, Any]) -> str:
    """``depth=2 width[64,32] dropout=0.12``: a student's parameters on one short line.

    Keys ``name_0``, ``name_1``, ... are grouped as ``name[v0,v1,...]``, in index order,
    where the other keys stand in their order.
    """
    groups: dict[str, dict[int, Any]] = {}
    order: list[str] = []
    for key, value in params.items():
        match = _INDEXED.match(str(key))
        name = match.group(1) if match else str(key)
        if name not in groups:
            groups[name] = {}
            order.append(name)
        groups[name][int(match.group(2)) if match else -1] = value
    parts = []
    for name in order:
        values = groups[name]
        if list(values) == [-1]:
            parts.append(f"{name}={short_number(values[-1])}")
            continue
        single = values.pop(-1, None)
        if single is not None:
            parts.append(f"{name}={short_number(single)}")
        listed = ",".join(short_number(values[i]) for i in sorted(values))
        parts.append(f"{name}[{listed}]")
    return " ".join(parts)
