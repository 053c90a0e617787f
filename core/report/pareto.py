"""The Pareto front of a search: the finished students no other student beats on all objectives.

A student *dominates* another when it is at least as good on every objective and
strictly better on one. The front is computed over finished trials that kept a
checkpoint (students that can be exported) and have a value for every objective,
jointly over all the search's objectives (``val_acc`` and ``params`` for a search with
one objective). This module is the one place it is computed; it is written as a table
(text and ``pareto.csv``) here and drawn by :func:`kdforge.report.plots.plot_pareto`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from kdforge.config.objective_settings import OBJECTIVE_MODES
from kdforge.data import ACCURACY, TaskMetric
from kdforge.interfaces import SearchSpace
from kdforge.report.leaderboard import TrialRow

__all__ = [
    "Objectives",
    "dominates",
    "format_front",
    "front_candidates",
    "front_objectives",
    "non_dominated",
    "pareto_front",
    "write_front_csv",
]

#: ``(objective name, "min" | "max")`` pairs.
Objectives = Sequence[tuple[str, str]]


def front_objectives(names: Sequence[str], metric: TaskMetric = ACCURACY) -> list[tuple[str, str]]:
    """The objectives a front is computed on: the search's, or the task's metric vs size.

    Args:
        names: The search's objective names (``config.objectives``), in order.
        metric: The task's metric (``val_<name>`` among ``names``).
    """
    modes: dict[str, str] = {**OBJECTIVE_MODES, metric.val: metric.mode}
    pairs = [(name, str(modes[name])) for name in names if name in modes]
    return pairs if len(pairs) > 1 else [(metric.val, metric.mode), ("params", "min")]


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    better = False
    for x, y, mode in zip(a, b, modes, strict=True):
        if mode == "max":
            x, y = -x, -y
        if x > y:
            return False
        if x < y:
            better = True
    return better


def non_dominated(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates, in input order.

    Duplicates of a front point all stay.
    """
    return [
        i
        for i, point in enumerate(points)
        if not any(dominates(other, point, modes) for other in points)
    ]


def _values(row: TrialRow, objectives: Objectives) -> list[float] | None:
    values = [row.objective(name) for name, _ in objectives]
    return None if any(v is None for v in values) else [float(v) for v in values if v is not None]


def front_candidates(rows: Sequence[TrialRow], objectives: Objectives) -> list[TrialRow]:
    """Finished rows with a checkpoint and a value for every objective."""
    return [
        r
        for r in rows
        if r.status == "finished" and r.checkpoint and _values(r, objectives) is not None
    ]


def pareto_front(rows: Sequence[TrialRow], objectives: Objectives) -> list[TrialRow]:
    """The non-dominated candidates, best accuracy first (ties: fewer parameters).

    Rows with identical objective values are all kept.
    """
    candidates = front_candidates(rows, objectives)
    modes = [mode for _, mode in objectives]
    points = [_values(r, objectives) or [] for r in candidates]
    front = [candidates[i] for i in non_dominated(points, modes)]
    return sorted(front, key=lambda r: (r.metric.rank(r.val_acc), r.params or 0, r.number))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _columns(objectives: Objectives, metric: TaskMetric) -> list[str]:
    names = [name for name, _ in objectives]
    shown = (metric.val, metric.test, "params", "macs", "latency_ms")
    return names + [c for c in shown if c not in names]


def _metric_of(rows: Sequence[TrialRow]) -> TaskMetric:
    return rows[0].metric if rows else ACCURACY


def format_front(
    front: Sequence[TrialRow], objectives: Objectives, chosen: TrialRow | None = None
) -> str:
    """A fixed-width table of the front (``*`` marks the chosen student)."""
    columns = _columns(objectives, _metric_of(front))
    header = ["", "trial", *columns]
    body = [
        [
            "*" if chosen is not None and row.trial_id == chosen.trial_id else "",
            f"{row.number:03d}",
            *[_fmt(row.objective(c)) for c in columns],
        ]
        for row in front
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=False)]
    lines = [
        "Pareto front ("
        + ", ".join(f"{n} {m}" for n, m in objectives)
        + f"): {len(front)} students"
    ]
    lines += [
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=False))
        for line in [header, *body]
    ]
    return "\n".join(lines)


def write_front_csv(front: Sequence[TrialRow], objectives: Objectives, path: Path) -> Path:
    """Write the front as CSV: trial, objectives, accuracy and cost columns, arch."""
    columns = [
        "trial",
        "trial_id",
        *_columns(objectives, _metric_of(front)),
        "latency_batch_ms",
        "size_bytes",
    ]
    archs = [SearchSpace.shown_arch(r.arch) for r in front]
    arch_keys = sorted({k for arch in archs for k in arch})
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*columns, *(f"student.{k}" for k in arch_keys)])
        for row, arch in zip(front, archs, strict=True):
            values = [row.number, row.trial_id, *[row.objective(c) for c in columns[2:]]]
            writer.writerow([*values, *(arch.get(k) for k in arch_keys)])
    return path
