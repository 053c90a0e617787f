"""The leaderboard of a search: one row per trial, and the choice of the winner."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdforge.config import SelectionSettings
from kdforge.data import ACCURACY, TaskMetric
from kdforge.interfaces import SearchSpace
from kdforge.wording import compact_params, plural, trial_name

__all__ = ["TrialRow", "format_table", "select_best", "write_csv"]


@dataclass
class TrialRow:
    """One trial as the user sees it.

    ``val_acc`` and ``test_acc`` hold the task's metric (``metric``): accuracy for
    classification. Files, tables and objectives name them ``val_<metric>`` and
    ``test_<metric>`` (``val_r2`` for regression).
    """

    number: int
    trial_id: str
    status: str
    params: int | None
    val_acc: float | None
    test_acc: float | None
    epochs: int
    lr: float | None
    loss_hparams: dict[str, float] = field(default_factory=dict)
    arch: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    checkpoint: str | None = None
    node_id: str = ""
    device: str = ""
    macs: int | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None
    latency_batch_ms: float | None = None
    constraint_violation: str = ""
    run_id: str = ""
    #: The space's short description of ``arch`` (``mlp 2x[64,32]``), set by the driver.
    arch_text: str = ""
    #: The task's metric that ``val_acc``/``test_acc`` hold, and its direction.
    metric: TaskMetric = ACCURACY

    @property
    def architecture(self) -> str:
        """``arch_text``, or a compact rendering of ``arch`` when no space described it."""
        return self.arch_text or compact_params(self.arch)

    def objective(self, name: str) -> float | None:
        """The value of objective ``name`` (``val_acc``, ``params``, ``latency_ms``, ...)."""
        if name == self.metric.val:
            name = "val_acc"
        elif name == self.metric.test:
            name = "test_acc"
        value = getattr(self, name, None)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    def flat(self) -> dict[str, Any]:
        """A flat dict for CSV and MLflow (hparams and arch as prefixed columns)."""
        row = asdict(self)
        row.pop("metric")
        names = {"val_acc": self.metric.val, "test_acc": self.metric.test}
        row = {names.get(k, k): v for k, v in row.items()}
        hparams = row.pop("loss_hparams")
        arch = row.pop("arch")
        row.update({f"loss.{k}": v for k, v in hparams.items()})
        row.update({f"student.{k}": v for k, v in SearchSpace.shown_arch(arch).items()})
        return row


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def select_best(rows: list[TrialRow], rule: SelectionSettings) -> TrialRow | None:
    """Pick the student to export among finished trials that kept a checkpoint.

    The task's metric (``row.metric``, in its direction) stands for accuracy below.
    ``accuracy``: highest validation accuracy, fewer parameters break ties.
    ``smallest_within``: fewest parameters among trials within ``tolerance`` of the
    best validation accuracy (higher accuracy breaks ties).
    ``most_accurate_under``: highest validation accuracy among trials whose measured
    values are within every ``max_*`` limit of the rule (a trial whose value was not
    measured does not qualify); fewer parameters break ties. None if none qualifies.
    """
    candidates = [r for r in rows if r.checkpoint and _finite(r.val_acc) and r.params is not None]
    if rule.rule == "most_accurate_under":
        limits = rule.limits()
        candidates = [
            r
            for r in candidates
            if all((v := r.objective(k)) is not None and v <= lim for k, lim in limits.items())
        ]
    if not candidates:
        return None
    metric = candidates[0].metric
    best_rank = min(metric.rank(r.val_acc) for r in candidates)
    if rule.rule == "smallest_within":
        # Within `tolerance` of the best, in the metric's direction.
        near = [r for r in candidates if metric.rank(r.val_acc) <= best_rank + rule.tolerance]
        return min(near, key=lambda r: (r.params or 0, metric.rank(r.val_acc)))
    return min(candidates, key=lambda r: (metric.rank(r.val_acc), r.params or 0))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: list[TrialRow], best: TrialRow | None = None, limit: int = 20) -> str:
    """A fixed-width text table, best validation value of the task's metric first."""
    hp_names = sorted({k for r in rows for k in r.loss_hparams})
    timed = any(r.latency_ms is not None for r in rows)
    extra = ["macs", *(["latency_ms"] if timed else [])]
    metric = rows[0].metric if rows else ACCURACY
    header = ["", "trial", "status", "arch", "params", *extra, metric.val, metric.test]
    header += [*hp_names, "lr", "epochs"]
    ordered = sorted(
        rows, key=lambda r: (r.status in ("failed", "rejected"), metric.rank(r.val_acc))
    )
    body = []
    for row in ordered[:limit]:
        mark = "*" if best is not None and row.trial_id == best.trial_id else ""
        body.append(
            [
                mark,
                f"{row.number:03d}",
                row.status,
                row.architecture,
                _fmt(row.params),
                *[_fmt(getattr(row, name), 3) for name in extra],
                _fmt(row.val_acc),
                _fmt(row.test_acc),
                *[_fmt(row.loss_hparams.get(h), 3) for h in hp_names],
                _fmt(row.lr),
                str(row.epochs),
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=False)]
    arch_at = header.index("arch")  # text: aligned left, the numbers right

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == arch_at else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    lines = [line(header), *(line(r) for r in body)]
    if len(ordered) > limit:
        lines.append(f"... {plural(len(ordered) - limit, 'more trial')} in leaderboard.csv")
    failed = [r for r in rows if r.status == "failed"]
    for row in failed[:5]:
        lines.append(f"{trial_name(row.number)} failed: {row.error}")
    rejected = [r for r in rows if r.status == "rejected"]
    for row in rejected[:3]:
        lines.append(
            f"{trial_name(row.number)} rejected before training: {row.constraint_violation}"
        )
    if len(rejected) > 3:
        lines.append(f"... {len(rejected) - 3} more rejected by constraints")
    return "\n".join(lines)


def write_csv(rows: list[TrialRow], path: Path) -> Path:
    """Write all rows as CSV (one column per param, hyperparameter and arch key)."""
    flat = [r.flat() for r in sorted(rows, key=lambda r: r.number)]
    columns: list[str] = []
    for row in flat:
        for key in row:
            if key not in columns:
                columns.append(key)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
    return path
