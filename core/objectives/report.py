"""After the trials: rejected count, latency where needed, Pareto front, MLflow logging.

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

from kdforge.config import SearchConfig, SelectionSettings
from kdforge.data import DataInfo
from kdforge.errors import ExportError, SearchError
from kdforge.interfaces import SearchSpace
from kdforge.objectives.constraints import REJECTED
from kdforge.report.leaderboard import TrialRow
from kdforge.report.pareto import format_front, pareto_front, plot_front, write_front_csv

__all__ = ["front_objectives", "measure_row_latency", "report_objectives"]

_COST_METRICS = ("params", "macs", "size_bytes", "latency_ms", "latency_batch_ms")


def front_objectives(config: SearchConfig) -> list[tuple[str, str]]:
    """The objectives the front is computed on (``val_acc``/``params`` if only one)."""
    pairs: list[tuple[str, str]] = [(str(o.name), str(o.mode)) for o in config.objectives]
    return pairs if len(pairs) > 1 else [("val_acc", "max"), ("params", "min")]


def measure_row_latency(
    row: TrialRow, space: SearchSpace, info: DataInfo, config: SearchConfig
) -> None:
    """Export ``row``'s student (with its trained weights) and store its latencies."""
    import torch

    from kdforge.objectives.costs import measure_latency_with
    from kdforge.search.trial import STATE_FILE

    model = space.build(dict(row.arch), info)
    if row.checkpoint:
        state = torch.load(Path(row.checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    result = measure_latency_with(model, info, config.latency)
    row.latency_ms = result.latency_ms
    row.latency_batch_ms = result.latency_batch_ms


def _ensure_choice_latency(
    rows: list[TrialRow], selection: SelectionSettings, measure: Callable[[TrialRow], None]
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
    for row in sorted(candidates, key=lambda r: (-(r.val_acc or 0.0), r.params or 0)):
        if row.latency_ms is None:
            measure(row)
            measured += 1
        if row.latency_ms is not None and row.latency_ms <= limits["latency_ms"]:
            break
    return measured


def _check_choice(rows: list[TrialRow], selection: SelectionSettings) -> None:
    """Raise a clear error when ``most_accurate_under`` leaves no candidate."""
    from kdforge.report.leaderboard import select_best

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
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    for row in rows:
        if not row.run_id:
            continue
        metrics = [
            Metric(name, float(value), now, 0)
            for name in _COST_METRICS
            if (value := row.objective(name)) is not None
        ]
        if metrics:
            client.log_batch(row.run_id, metrics=metrics)
        if row.status == REJECTED:
            client.set_tag(row.run_id, "kdforge.status", REJECTED)
            client.set_tag(
                row.run_id, "kdforge.constraint_violation", row.constraint_violation[:500]
            )


def report_objectives(
    config: SearchConfig,
    space: SearchSpace,
    info: DataInfo,
    rows: list[TrialRow],
    search_dir: Path,
    tracking_uri: str,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns entries for ``summary.json``.

    Raises:
        SearchError: ``most_accurate_under`` limits that no finished student meets.
    """
    import mlflow

    objectives = front_objectives(config)
    rejected = [r for r in rows if r.status == REJECTED]
    if rejected:
        limits = ", ".join(f"{k}={v:,.4g}" for k, v in config.constraints.limits().items())
        emit(f"{len(rejected)} of {len(rows)} sampled students rejected before training ({limits})")

    def measure(row: TrialRow) -> None:
        try:
            measure_row_latency(row, space, info, config)
        except ExportError as exc:
            # The report must not lose a finished search: the row keeps no latency.
            emit(f"trial {row.number:03d}: latency not measured ({exc})")

    front = pareto_front(rows, objectives)
    measured = 0
    if config.latency.measure_front and len(config.objectives) > 1:
        for row in front:
            if row.latency_ms is None:
                measure(row)
                measured += 1
    measured += _ensure_choice_latency(rows, config.selection, measure)
    if measured:
        emit(f"measured ONNX latency of {measured} students after the search")
    _check_choice(rows, config.selection)
    from kdforge.report.leaderboard import select_best

    chosen = select_best(rows, config.selection)
    csv_path = write_front_csv(front, objectives, search_dir / "pareto.csv")
    png_path = plot_front(rows, front, objectives, search_dir / "pareto.png", chosen)
    emit(format_front(front, objectives, chosen))
    mlflow.log_artifact(str(csv_path))
    mlflow.log_artifact(str(png_path))
    mlflow.log_metrics({"rejected_trials": float(len(rejected)), "pareto_size": float(len(front))})
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
