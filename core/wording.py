"""How kdforge words counts and trials in what it prints, so every line says it alike.

* :func:`plural`: ``1 student``, ``3 students``, ``1,412 rows`` (one helper instead of
  ``f"{n} students"`` everywhere, which printed "1 students").
* :func:`trial_name`: ``trial 013``, the one name of a trial in the progress lines, the
  leaderboard, the result block, the report and the MLflow run names. The number is the
  order in which the searcher created the trial (0-based), so it is stable across runs
  and resumes, unlike Ray's hex trial id or the order in which trials finish.
"""

from __future__ import annotations

__all__ = ["plural", "trial_name"]

# English plurals that do not just add "s".
_IRREGULAR = {"child": "children", "index": "indices", "matrix": "matrices", "is": "are"}


def plural(count: float, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, pluralised when ``count`` is not one.

    Args:
        count: The number (ints get thousands separators: ``1,412 rows``).
        word: The singular (``"student"``).
        many: The plural when it is irregular (default: ``word + "s"``, ``"es"`` after
            s/x/ch/sh, and a few known irregular words).

    Returns:
        E.g. ``"1 student"``, ``"0 students"``, ``"2 classes"``.
    """
    number = f"{count:,}" if isinstance(count, int) else f"{count:g}"
    if count == 1:
        return f"{number} {word}"
    if many is None:
        many = _IRREGULAR.get(word)
    if many is None:
        many = word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{number} {many}"


def trial_name(number: int) -> str:
    """The name of trial ``number`` everywhere kdforge shows it: ``trial 013``."""
    return f"trial {number:03d}"
