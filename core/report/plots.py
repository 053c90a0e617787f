"""The PNG plots of a search: accuracy vs size, the Pareto front, optimisation history.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
backend switch), from leaderboard rows only, so ``kdforge report`` can redraw them
from ``leaderboard.csv`` long after the search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdforge.data import ACCURACY
from kdforge.report.leaderboard import TrialRow
from kdforge.report.pareto import Objectives, front_objectives, pareto_front

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# matplotlib is imported inside the functions that draw: the search driver imports this
# module at start, but draws only after the trials.

__all__ = [
    "PLOT_FILES",
    "make_plots",
    "plot_accuracy_vs_size",
    "plot_history",
    "plot_pareto",
]

#: Plot name -> file name inside the plots folder.
PLOT_FILES = {
    "accuracy_vs_size": "accuracy_vs_size.png",
    "pareto": "pareto.png",
    "history": "optimization_history.png",
}
#: Cost metrics a Pareto panel can use, with axis labels.
_COSTS = {
    "params": "parameters",
    "macs": "MACs (batch 1)",
    "size_bytes": "weights (bytes)",
    "latency_ms": "ONNX latency, batch 1 (ms)",
    "latency_batch_ms": "ONNX latency, batch (ms)",
}
_STATUS_COLORS = {
    "finished": "#1f77b4",
    "stopped": "#ff7f0e",
    "failed": "#d62728",
    "rejected": "#7f7f7f",
}


def _value(row: TrialRow, name: str) -> float | None:
    value = getattr(row, name, None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _figure(panels: int = 1) -> tuple[Any, list[Axes]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4 * panels, 4.4), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def _log_if_wide(ax: Axes, values: Sequence[float]) -> None:
    """A log x axis when the values span more than 20x (sizes often do)."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")


def _metric_word(rows: Sequence[TrialRow]) -> str:
    """How the plots name the task's metric: ``accuracy``, or its own name (``r2``)."""
    name = rows[0].metric.name if rows else "acc"
    return "accuracy" if name == "acc" else name


def _label(ax: Axes, xlabel: str, title: str, metric: str = "accuracy") -> None:
    """Axis labels, title, grid and legend, the same on every plot (the metric on y)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(title.replace("accuracy", metric))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_accuracy_vs_size(
    rows: Sequence[TrialRow],
    path: Path,
    *,
    best: TrialRow | None = None,
    teacher_acc: float | None = None,
    size: str = "params",
) -> Path:
    """Scatter of validation accuracy against size, one point per trial, by status."""
    figure, (ax,) = _figure()
    drawn = False
    for status, color in _STATUS_COLORS.items():
        points = [
            (x, y)
            for r in rows
            if r.status == status
            and (x := _value(r, size)) is not None
            and (y := _value(r, "val_acc")) is not None
        ]
        if points:
            drawn = True
            ax.scatter(*zip(*points, strict=True), label=status, color=color, alpha=0.8)
    if not drawn:
        _empty(ax, "no trial reported accuracy and size")
        return _save(figure, path)
    best_x = _value(best, size) if best is not None else None
    best_y = _value(best, "val_acc") if best is not None else None
    if best is not None and best_x is not None and best_y is not None:
        ax.scatter(
            [best_x],
            [best_y],
            marker="*",
            s=260,
            color="gold",
            edgecolor="black",
            zorder=5,
            label=f"chosen (trial {best.number:03d})",
        )
    if teacher_acc is not None and math.isfinite(teacher_acc):
        ax.axhline(
            teacher_acc, color="black", linestyle="--", linewidth=1, label="teacher (validation)"
        )
    _log_if_wide(ax, [x for r in rows if (x := _value(r, size)) is not None])
    _label(ax, _COSTS.get(size, size), "accuracy vs size, one point per trial", _metric_word(rows))
    return _save(figure, path)


def plot_pareto(
    rows: Sequence[TrialRow],
    front: Sequence[TrialRow],
    objectives: Objectives,
    path: Path,
    chosen: TrialRow | None = None,
) -> Path:
    """Validation accuracy against each cost objective, the Pareto front joined.

    Every finished student is a grey dot; the front (:func:`kdforge.report.pareto.pareto_front`
    over all ``objectives`` at once) is a green step line with its trial numbers; the
    chosen student is a star. A cost axis is logarithmic when its values span over 20x.
    """
    costs = [name for name, _ in objectives if name != "val_acc" and name in _COSTS]
    figure, axes = _figure(len(costs or ["params"]))
    for ax, cost in zip(axes, costs or ["params"], strict=True):
        points = [
            (x, y)
            for r in rows
            if r.status == "finished"
            and (x := _value(r, cost)) is not None
            and (y := _value(r, "val_acc")) is not None
        ]
        if not points:
            _empty(ax, f"no finished trial reported {cost}")
            continue
        ax.scatter(*zip(*points, strict=True), color="#bbbbbb", label="finished")
        line = sorted(
            [
                (x, y, row)
                for row in front
                if (x := _value(row, cost)) is not None
                and (y := _value(row, "val_acc")) is not None
            ],
            key=lambda point: (point[0], point[1]),
        )
        if line:
            ax.step(
                [p[0] for p in line],
                [p[1] for p in line],
                where="post",
                color="#2ca02c",
                marker="o",
                label=f"Pareto front ({len(front)})",
            )
        for x, y, row in line:
            ax.annotate(
                f"{row.number:03d}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7
            )
        bx = _value(chosen, cost) if chosen is not None else None
        by = _value(chosen, "val_acc") if chosen is not None else None
        if bx is not None and by is not None:
            ax.scatter(
                [bx],
                [by],
                marker="*",
                s=260,
                color="gold",
                edgecolor="black",
                zorder=5,
                label="chosen",
            )
        _log_if_wide(ax, [p[0] for p in points])
        _label(ax, _COSTS[cost], f"Pareto front: accuracy vs {cost}", _metric_word(rows))
    return _save(figure, path)


def plot_history(rows: Sequence[TrialRow], path: Path) -> Path:
    """Validation accuracy per trial in start order, with the best so far."""
    figure, (ax,) = _figure()
    ordered = sorted(rows, key=lambda r: r.number)
    if not any(_value(r, "val_acc") is not None for r in ordered):
        _empty(ax, "no trial reported accuracy")
        return _save(figure, path)
    for status, color in _STATUS_COLORS.items():
        points = [
            (r.number, v)
            for r in ordered
            if r.status == status and (v := _value(r, "val_acc")) is not None
        ]
        if points:
            ax.scatter(*zip(*points, strict=True), color=color, label=status, alpha=0.8)
    best_x, best_y = [], []
    current: float | None = None
    for row in ordered:
        value = _value(row, "val_acc")
        finished = value is not None and row.status == "finished"
        if finished and (current is None or row.metric.rank(value) < row.metric.rank(current)):
            current = value
        if current is not None:
            best_x.append(row.number)
            best_y.append(current)
    if best_x:
        ax.step(best_x, best_y, where="post", color="black", label="best finished so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _label(ax, "trial", "optimisation history", _metric_word(rows))
    return _save(figure, path)


def make_plots(
    rows: Sequence[TrialRow],
    folder: Path,
    *,
    best: TrialRow | None = None,
    teacher_acc: float | None = None,
    objectives: Sequence[str] = (),
    pareto_png: Path | None = None,
) -> dict[str, Path]:
    """Draw every plot into ``folder``; returns plot name -> file (see :data:`PLOT_FILES`).

    Args:
        rows: The leaderboard rows.
        folder: Where the PNG files go (created).
        best: The chosen trial (marked with a star).
        teacher_acc: The teacher's validation accuracy (a dashed line).
        objectives: The search's objective names; the front is computed on them
            (accuracy vs ``params`` for one) and each cost gets a panel.
        pareto_png: The Pareto plot the objective step drew (``pareto.png``), used
            instead of drawing it again when the file exists.
    """
    if pareto_png is not None and Path(pareto_png).is_file():
        pareto = Path(pareto_png)
    else:
        pairs = front_objectives(objectives, rows[0].metric if rows else ACCURACY)
        front = pareto_front(rows, pairs)
        pareto = plot_pareto(rows, front, pairs, folder / PLOT_FILES["pareto"], chosen=best)
    return {
        "accuracy_vs_size": plot_accuracy_vs_size(
            rows, folder / PLOT_FILES["accuracy_vs_size"], best=best, teacher_acc=teacher_acc
        ),
        "pareto": pareto,
        "history": plot_history(rows, folder / PLOT_FILES["history"]),
    }
