"""The Pareto front of a search: the finished students no other student beats on all objectives.

A student *dominates* another when it is at least as good on every objective and
strictly better on one. The front is computed over finished trials that kept a
checkpoint (students that can be exported) and have a value for every objective;
it is written as a table (text and ``pareto.csv``) and a plot (``pareto.png``: the
accuracy against each other objective, the front highlighted, the chosen student
starred).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from kdforge.report.leaderboard import TrialRow

__all__ = [
    "dominates",
    "format_front",
    "front_candidates",
    "pareto_front",
    "plot_front",
    "write_front_csv",
]

#: ``(objective name, "min" | "max")`` pairs.
Objectives = Sequence[tuple[str, str]]


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
    scored = [(r, _values(r, objectives) or []) for r in candidates]
    front = [
        row
        for row, values in scored
        if not any(dominates(other, values, modes) for _, other in scored)
    ]
    return sorted(front, key=lambda r: (-(r.val_acc or 0.0), r.params or 0, r.number))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _columns(objectives: Objectives) -> list[str]:
    names = [name for name, _ in objectives]
    extra = [c for c in ("val_acc", "test_acc", "params", "macs", "latency_ms") if c not in names]
    return names + extra


def format_front(
    front: Sequence[TrialRow], objectives: Objectives, chosen: TrialRow | None = None
) -> str:
    """A fixed-width table of the front (``*`` marks the chosen student)."""
    columns = _columns(objectives)
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
    columns = ["trial", "trial_id", *_columns(objectives), "latency_batch_ms", "size_bytes"]
    arch_keys = sorted({k for r in front for k in r.arch})
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*columns, *(f"student.{k}" for k in arch_keys)])
        for row in front:
            values = [row.number, row.trial_id, *[row.objective(c) for c in columns[2:]]]
            writer.writerow([*values, *(row.arch.get(k) for k in arch_keys)])
    return path


def plot_front(
    rows: Sequence[TrialRow],
    front: Sequence[TrialRow],
    objectives: Objectives,
    path: Path,
    chosen: TrialRow | None = None,
) -> Path:
    """Save ``pareto.png``: accuracy against each cost objective (matplotlib, Agg).

    Every finished student is a grey dot, the front is a red step line, the chosen
    student a star. Cost axes use a log scale when the values span over 20x.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = [name for name, _ in objectives if name != "val_acc"] or ["params"]
    figure, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4), squeeze=False)
    finished = [r for r in rows if r.status == "finished" and r.val_acc is not None]
    for axis, cost in zip(axes[0], costs, strict=True):
        points = [(r.objective(cost), r.val_acc) for r in finished if r.objective(cost) is not None]
        if points:
            axis.scatter(*zip(*points, strict=True), color="0.6", s=18, label="finished")
        line = sorted(
            (r.objective(cost), r.val_acc) for r in front if r.objective(cost) is not None
        )
        if line:
            axis.step(
                *zip(*line, strict=True),
                where="post",
                color="tab:red",
                marker="o",
                label="Pareto front",
            )
        if chosen is not None and chosen.objective(cost) is not None:
            axis.scatter(
                [chosen.objective(cost)],
                [chosen.val_acc],
                marker="*",
                s=220,
                color="tab:blue",
                zorder=5,
                label="chosen",
            )
        values = [p[0] for p in points if p[0] and p[0] > 0]
        if values and max(values) / min(values) > 20:
            axis.set_xscale("log")
        axis.set_xlabel(cost)
        axis.set_ylabel("val_acc")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="lower right", fontsize=8)
    figure.suptitle("Pareto front: validation accuracy vs cost")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
