"""Constraints on students, checked inside a trial before any training.

A trial builds its student, measures it (:func:`measure_trial`: parameters, MACs and
size always; ONNX latency only when an objective or ``max_latency_ms`` needs it) and,
when a limit of the config's ``constraints`` section is exceeded, reports one result
marked ``rejected`` and returns without training (:func:`rejected_result`). The
searcher then tells Optuna the trial is infeasible (:func:`constraint_excess`), so
samplers that support constraints (TPE, NSGA-II) steer away from such points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from kdforge.config import SearchConfig
from kdforge.config.objective_settings import CONSTRAINT_METRICS, LatencySettings
from kdforge.data import ACCURACY, DataInfo, TaskMetric
from kdforge.errors import ExportError
from kdforge.interfaces import Exporter
from kdforge.objectives.costs import (
    LATENCY_OBJECTIVES,
    count_macs,
    example_input,
    measure_latency_with,
    model_size_bytes,
)
from kdforge.training.evaluate import count_parameters

__all__ = [
    "REJECTED",
    "TrialObjectives",
    "constraint_excess",
    "measure_trial",
    "rejected_result",
    "trial_objectives_for",
    "violations",
]

#: Value of the ``kdforge_status`` result key (and of the leaderboard status) of a
#: student rejected by a constraint.
REJECTED = "rejected"

_LIMIT_KEYS = {metric: key for key, metric in CONSTRAINT_METRICS.items()}


@dataclass(frozen=True)
class TrialObjectives:
    """What every trial measures before training, and the limits it enforces.

    Attributes:
        limits: Metric name -> largest allowed value (``{"params": 50000}``).
        measure_latency: Export and time every student (an objective or a limit needs it).
        latency: How latency is measured.
        exporter: The ONNX exporter latency is measured through (needed with
            ``measure_latency``).
    """

    limits: dict[str, float] = field(default_factory=dict)
    measure_latency: bool = False
    latency: LatencySettings = field(default_factory=lambda: LatencySettings())
    exporter: Exporter | None = None


def trial_objectives_for(config: SearchConfig, exporter: Exporter | None) -> TrialObjectives:
    """The trial-side objective settings of a search config.

    Args:
        config: The search config (objectives, constraints, latency).
        exporter: The ONNX exporter that latency is measured through.
    """
    limits = config.constraints.limits()
    names = {o.name for o in config.objectives}
    needs_latency = bool(names & set(LATENCY_OBJECTIVES)) or "latency_ms" in limits
    return TrialObjectives(
        limits=limits, measure_latency=needs_latency, latency=config.latency, exporter=exporter
    )


def violations(metrics: Mapping[str, Any], limits: Mapping[str, float]) -> list[str]:
    """One line per exceeded limit, e.g. ``"params 120,000 > max_params 50,000"``.

    A metric that was not measured (absent) violates nothing.
    """
    out = []
    for metric, limit in limits.items():
        value = metrics.get(metric)
        if isinstance(value, int | float) and value > limit:
            out.append(f"{metric} {_fmt(value)} > {_LIMIT_KEYS[metric]} {_fmt(limit)}")
    return out


def constraint_excess(metrics: Mapping[str, Any], limits: Mapping[str, float]) -> dict[str, float]:
    """Optuna constraint values: ``value / limit - 1`` per limit (<= 0 is feasible).

    Unmeasured metrics count as feasible (0.0).
    """
    out = {}
    for metric, limit in limits.items():
        value = metrics.get(metric)
        if isinstance(value, int | float) and math.isfinite(float(value)):
            out[metric] = float(value) / limit - 1.0
        else:
            out[metric] = 0.0
    return out


def measure_trial(
    model: nn.Module, info: DataInfo, spec: TrialObjectives | None
) -> tuple[dict[str, float], str | None]:
    """Measure a freshly built student and check it against the limits.

    The cheap measures (params, MACs, size) are checked first, so a student they
    reject is never exported for its latency.

    Args:
        model: The built, untrained student.
        info: The data description (input shape and dtype).
        spec: The search's settings; None measures params, MACs and size only.

    Returns:
        ``(metrics, violation)``: the measured values, and None or a ``"; "``-joined
        description of every exceeded limit.
    """
    metrics: dict[str, float] = {
        "params": float(count_parameters(model)),
        "size_bytes": float(model_size_bytes(model)),
    }
    try:
        metrics["macs"] = float(count_macs(model, example_input(info, 1)))
    except Exception:
        # A custom student the counter cannot run must still train, unless MACs are
        # limited (then the error says why the trial cannot be checked).
        if spec is not None and "macs" in spec.limits:
            raise
    if spec is None:
        return metrics, None
    problems = violations(metrics, spec.limits)
    if not problems and spec.measure_latency:
        if spec.exporter is None:
            raise ExportError("latency is measured, but no ONNX exporter was given")
        result = measure_latency_with(model, info, spec.latency, spec.exporter)
        metrics.update(result.metrics())
        problems = violations(metrics, spec.limits)
    return metrics, "; ".join(problems) or None


def rejected_result(
    metrics: Mapping[str, float], violation: str, metric: TaskMetric = ACCURACY
) -> dict[str, Any]:
    """The one result a rejected trial reports.

    The task's metric (``val_acc``) is its ``failed_value`` (0 accuracy: the student
    was never trained) so a single-objective sampler learns the region is bad;
    latencies that were not measured are reported as infinity, so a multi-objective
    searcher still receives every objective.
    """
    result: dict[str, Any] = {"latency_ms": math.inf, "latency_batch_ms": math.inf}
    result.update(metrics)
    result.update(
        {
            "epoch": 0,
            metric.val: metric.failed_value,
            "kdforge_status": REJECTED,
            "constraint_violation": violation,
        }
    )
    return result


def _fmt(value: float) -> str:
    number = float(value)
    if number.is_integer():
        return f"{int(number):,}"
    return f"{number:.3g}"
