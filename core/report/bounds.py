"""Warn when the best trials crowd a bound of a searched range.

If the best students all took a value near one end of a range (learning rate, a loss
hyperparameter, a width), the optimum probably lies beyond it and the range should be
widened. :func:`crowded_bounds` looks at the top trials by validation accuracy and
reports every numeric parameter whose values all sit within :data:`EDGE` of the same
bound (measured in log space for log-scaled ranges).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kdforge.report.leaderboard import TrialRow

__all__ = ["EDGE", "SearchedRange", "crowded_bounds", "top_k"]

#: Share of a range (log space for log ranges) that counts as "near a bound".
EDGE = 0.1


@dataclass(frozen=True)
class SearchedRange:
    """One numeric parameter that was searched.

    Attributes:
        name: As the leaderboard shows it: ``lr``, ``loss.<name>``, ``student.<name>``.
        low: Lower bound.
        high: Upper bound.
        log: Sampled on a log scale.
        where: The config key (or place) that sets the range, for the hint.
    """

    name: str
    low: float
    high: float
    log: bool
    where: str


def top_k(finished: int) -> int:
    """How many of the best trials are looked at: a quarter, between 3 and 5."""
    return min(5, max(3, finished // 4))


def _value(row: TrialRow, name: str) -> Any:
    if name == "lr":
        return row.lr
    kind, _, key = name.partition(".")
    return (row.loss_hparams if kind == "loss" else row.arch).get(key)


def _position(value: float, searched: SearchedRange) -> float:
    if searched.log:
        low, high, value = (math.log(searched.low), math.log(searched.high), math.log(value))
    else:
        low, high = searched.low, searched.high
    return (value - low) / (high - low)


def crowded_bounds(
    rows: Sequence[TrialRow],
    ranges: Sequence[SearchedRange],
    score: Callable[[TrialRow], float | None] | None = None,
) -> list[str]:
    """One warning per searched parameter whose best trials all sit near one bound.

    Args:
        rows: Every trial of the search.
        ranges: The numeric parameters searched, with their bounds.
        score: What "best" means, higher is better (default: the task's validation
            metric, turned so that higher is better).

    Returns:
        The warnings (empty with fewer than four finished trials: too few to say).
    """
    if score is None:

        def score(row: TrialRow) -> float | None:
            return -row.metric.rank(row.val_acc)

    # Trials that trained and reported (ASHA-stopped ones too); failed or rejected not.
    trained = ("finished", "stopped")
    scored = [(s, r) for r in rows if r.status in trained and (s := score(r)) is not None]
    scored = [(s, r) for s, r in scored if math.isfinite(s)]
    if len(scored) < 4:
        return []
    best = [r for _, r in sorted(scored, key=lambda pair: -pair[0])[: top_k(len(scored))]]
    warnings = []
    for searched in ranges:
        if not searched.high > searched.low:
            continue
        values = [_value(r, searched.name) for r in best]
        if any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
            continue  # conditional: not every top trial has it
        if searched.log and any(v <= 0 for v in values):
            continue
        positions = [_position(float(v), searched) for v in values]
        if all(p >= 1 - EDGE for p in positions):
            side, change = "upper", "raise"
        elif all(p <= EDGE for p in positions):
            side, change = "lower", "lower"
        else:
            continue
        shown = ", ".join(f"{v:.3g}" for v in values)
        scale = ", log scale" if searched.log else ""
        warnings.append(
            f"warning: the best {len(best)} trials all have {searched.name} near the {side} "
            f"bound of its range [{searched.low:g}, {searched.high:g}{scale}] ({shown}): "
            f"the optimum may lie beyond it; {change} that bound ({searched.where})"
        )
    return warnings
