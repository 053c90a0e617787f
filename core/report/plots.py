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

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from kdforge.report.leaderboard import TrialRow

__all__ = [
    "PLOT_FILES",
    "make_plots",
    "pareto_front",
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


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points.

    Args:
        points: One tuple of objective values per point.
        modes: ``"max"`` or ``"min"`` per objective.

    Returns:
        Indices of points no other point dominates (at least as good everywhere and
        better somewhere), in input order. Duplicates of a front point all stay.
    """
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    scored = [[s * v for s, v in zip(signs, p, strict=True)] for p in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and any(
            x > y for x, y in zip(a, b, strict=True)
        )

    return [i for i, p in enumerate(scored) if not any(dominates(q, p) for q in scored)]


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
    ax.set_xlabel(_COSTS.get(size, size))
    ax.set_ylabel("validation accuracy")
    ax.set_title("accuracy vs size, one point per trial")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def plot_pareto(
    rows: Sequence[TrialRow],
    path: Path,
    *,
    costs: Sequence[str] = ("params",),
    best: TrialRow | None = None,
) -> Path:
    """Validation accuracy against each cost, with the non-dominated trials joined.

    The front of each panel is computed on accuracy and that panel's cost only.
    """
    usable = [c for c in costs if c in _COSTS] or ["params"]
    figure, axes = _figure(len(usable))
    for ax, cost in zip(axes, usable, strict=True):
        points = [
            (x, y, r)
            for r in rows
            if r.status != "failed"
            and (x := _value(r, cost)) is not None
            and (y := _value(r, "val_acc")) is not None
        ]
        if not points:
            _empty(ax, f"no trial reported {cost}")
            continue
        front = sorted(
            (points[i] for i in pareto_front([(y, x) for x, y, _ in points], ["max", "min"])),
            key=lambda p: p[0],
        )
        ax.scatter(
            [p[0] for p in points], [p[1] for p in points], color="#bbbbbb", label="dominated"
        )
        ax.step(
            [p[0] for p in front],
            [p[1] for p in front],
            where="post",
            color="#2ca02c",
            marker="o",
            label=f"Pareto front ({len(front)})",
        )
        for x, y, row in front:
            ax.annotate(
                f"{row.number:03d}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7
            )
        bx = _value(best, cost) if best is not None else None
        by = _value(best, "val_acc") if best is not None else None
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
        ax.set_xlabel(_COSTS[cost])
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"Pareto front: accuracy vs {cost}")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
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
    best_x, best_y, current = [], [], -math.inf
    for row in ordered:
        value = _value(row, "val_acc")
        if value is not None and row.status == "finished":
            current = max(current, value)
        if current > -math.inf:
            best_x.append(row.number)
            best_y.append(current)
    if best_x:
        ax.step(best_x, best_y, where="post", color="black", label="best finished so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("optimisation history")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
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
        objectives: The search's objectives; their cost metrics get Pareto panels
            (``params`` when there are none).
        pareto_png: The search's own Pareto plot (:mod:`kdforge.report.pareto`), used instead
            of drawing one when the file exists.
    """
    costs = [o for o in objectives if o in _COSTS] or ["params"]
    if pareto_png is not None and Path(pareto_png).is_file():
        pareto = Path(pareto_png)
    else:
        pareto = plot_pareto(rows, folder / PLOT_FILES["pareto"], costs=costs, best=best)
    return {
        "accuracy_vs_size": plot_accuracy_vs_size(
            rows, folder / PLOT_FILES["accuracy_vs_size"], best=best, teacher_acc=teacher_acc
        ),
        "pareto": pareto,
        "history": plot_history(rows, folder / PLOT_FILES["history"]),
    }
