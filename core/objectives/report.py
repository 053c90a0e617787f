"""The objective step after the trials: rejected count, latency where needed, Pareto front.

Runs in the driver between the Ray Tune search and the choice of the student to
export (:func:`report_objectives`), inside the MLflow parent run:

1. counts the students rejected by constraints;
2. computes the Pareto front over the config's objectives (or over ``val_acc`` and
   ``params`` for a single-objective search, as a trade-off report);
3. measures ONNX latency where no trial did: the front's students (when
   ``latency.measure_front`` and the search has several objectives), and, for
   ``selection.rule: most_accurate_under`` with ``max_latency_ms``, candidates in
   order of accuracy until one is fast enough;
4. writes ``pareto.csv`` and ``pareto.png`` and logs them, with ``rejected_trials``
   and ``pareto_size``, to the parent run, and each trial's costs (params, MACs,
   size, latency) and status to its nested run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge import progress
from kdforge.config import SearchConfig, SelectionSettings
from kdforge.data import ACCURACY
from kdforge.errors import ExportError, SearchError
from kdforge.objectives.constraints import REJECTED
from kdforge.objectives.costs import LatencyResult
from kdforge.report.leaderboard import TrialRow, select_best
from kdforge.report.pareto import format_front, front_objectives, pareto_front, write_front_csv
from kdforge.report.plots import plot_pareto
from kdforge.tracking.search_runs import log_to_trial_runs
from kdforge.tracking.store import log_files, log_numeric_metrics
from kdforge.wording import plural

# MLflow (~1.5 s to import) is imported inside the functions that log: a search then
# imports it in the background while its data loads (kdforge.search.services).
__all__ = ["report_objectives"]

_COST_METRICS = ("params", "macs", "size_bytes", "latency_ms", "latency_batch_ms")

#: Measures a finished trial's student (built with its trained weights) in ONNX Runtime.
MeasureLatency = Callable[[TrialRow], LatencyResult]


def _ensure_choice_latency(
    rows: list[TrialRow],
    selection: SelectionSettings,
    measure: Callable[[TrialRow], None],
    emit: Callable[[str], None],
) -> int:
    """Measure candidates, most accurate first, until one meets ``max_latency_ms``."""
    limits = selection.limits()
    if selection.rule != "most_accurate_under" or "latency_ms" not in limits:
        return 0
    others = {k: v for k, v in limits.items() if k != "latency_ms"}
    candidates = [
        r
        for r in rows
        if r.status == "finished"
        and r.checkpoint
        and r.val_acc is not None
        and all((v := r.objective(k)) is not None and v <= lim for k, lim in others.items())
    ]
    measured = 0
    with progress.phase("latency", emit=emit) as bar:  # candidates until one is fast enough
        for row in sorted(candidates, key=lambda r: (r.metric.rank(r.val_acc), r.params or 0)):
            if row.latency_ms is None:
                measure(row)
                measured += 1
                bar.set_note(plural(measured, "student"))
            if row.latency_ms is not None and row.latency_ms <= limits["latency_ms"]:
                break
    return measured


def _check_choice(rows: list[TrialRow], selection: SelectionSettings) -> None:
    """Raise a clear error when ``most_accurate_under`` leaves no candidate."""
    if selection.rule != "most_accurate_under" or select_best(rows, selection) is not None:
        return
    finished = [r for r in rows if r.status == "finished" and r.checkpoint]
    if not finished:
        return  # the caller reports "no trial finished"
    parts = []
    for metric, limit in selection.limits().items():
        values = [v for r in finished if (v := r.objective(metric)) is not None]
        best = f"{min(values):,.4g}" if values else "not measured"
        parts.append(f"{metric} <= {limit:,.4g} (lowest finished: {best})")
    raise SearchError(
        "selection.rule most_accurate_under: no finished student meets " + " and ".join(parts),
        hint="loosen the selection.max_* limits (or rerun with --max-latency-ms/--max-params), "
        "or add the same limits under `constraints` so the search only trains students that fit",
    )


def _log_trials(tracking_uri: str, rows: list[TrialRow]) -> None:
    """Per nested run: cost metrics, status (``rejected`` overrides) and violation."""
    updates = {}
    for row in rows:
        if not row.run_id:
            continue
        metrics = {n: v for n in _COST_METRICS if (v := row.objective(n)) is not None}
        tags = {}
        if row.status == REJECTED:
            tags = {
                "kdforge.status": REJECTED,
                "kdforge.constraint_violation": row.constraint_violation[:500],
            }
        updates[row.run_id] = (metrics, tags)
    log_to_trial_runs(tracking_uri, updates)


def report_objectives(
    config: SearchConfig,
    rows: list[TrialRow],
    measure_latency: MeasureLatency,
    search_dir: Path,
    tracking_uri: str,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns entries for ``summary.json``.

    Args:
        config: The search config (objectives, constraints, selection, latency).
        rows: The leaderboard rows; measured latencies are stored on them.
        measure_latency: Measures one finished trial's student.
        search_dir: Where ``pareto.csv`` and ``pareto.png`` are written.
        tracking_uri: The MLflow store of the trials' nested runs.
        emit: Where progress lines go.

    Raises:
        SearchError: ``most_accurate_under`` limits that no finished student meets.
    """
    metric = rows[0].metric if rows else ACCURACY
    objectives = front_objectives([o.name for o in config.objectives], metric)
    rejected = [r for r in rows if r.status == REJECTED]
    if rejected:
        limits = ", ".join(f"{k}={v:,.4g}" for k, v in config.constraints.limits().items())
        emit(
            f"{len(rejected)} of {plural(len(rows), 'sampled student')} rejected before "
            f"training ({limits})"
        )

    def measure(row: TrialRow) -> None:
        try:
            result = measure_latency(row)
        except ExportError as exc:
            # The report must not lose a finished search: the row keeps no latency.
            emit(f"trial {row.number:03d}: latency not measured ({exc})")
            return
        row.latency_ms = result.latency_ms
        row.latency_batch_ms = result.latency_batch_ms

    front = pareto_front(rows, objectives)
    measured = 0
    if config.latency.measure_front and len(config.objectives) > 1:
        unmeasured = [row for row in front if row.latency_ms is None]
        if unmeasured:
            with progress.phase(
                "latency", total=len(unmeasured), unit="students", emit=emit
            ) as bar:
                for row in unmeasured:
                    measure(row)
                    measured += 1
                    bar.advance()
    measured += _ensure_choice_latency(rows, config.selection, measure, emit)
    if measured:
        emit(f"measured ONNX latency of {plural(measured, 'student')} after the search")
    _check_choice(rows, config.selection)
    chosen = select_best(rows, config.selection)
    csv_path = write_front_csv(front, objectives, search_dir / "pareto.csv")
    png_path = plot_pareto(rows, front, objectives, search_dir / "pareto.png", chosen)
    if len(config.objectives) > 1:  # one objective has no trade-off to show
        emit(format_front(front, objectives, chosen))
    log_files(csv_path, png_path)
    log_numeric_metrics({"rejected_trials": len(rejected), "pareto_size": len(front)})
    _log_trials(tracking_uri, rows)
    return {
        "objectives": [
            {"name": n, "mode": m} for n, m in ((o.name, str(o.mode)) for o in config.objectives)
        ],
        "constraints": config.constraints.limits(),
        "rejected_trials": len(rejected),
        "pareto_front": [r.number for r in front],
        "pareto_csv": str(csv_path),
        "pareto_png": str(png_path),
    }
