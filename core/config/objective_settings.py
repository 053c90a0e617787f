"""Config sections of objectives, constraints and latency measurement (search configs).

Kept apart from :mod:`kdforge.config` (which includes them in ``SearchConfig``) so the
objective code and its docs live together. No torch import here: configs are
validated before anything heavy loads.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from kdforge.data import TaskMetric
from kdforge.errors import ConfigError
from kdforge.interfaces import _refuse_quoted_number

__all__ = [
    "CONSTRAINT_METRICS",
    "OBJECTIVE_MODES",
    "ConstraintSettings",
    "LatencySettings",
    "ObjectiveSpec",
    "check_objectives",
    "default_objectives",
    "resolve_objectives",
]

# A task's selection metric is `val_<metric>` (val_acc, val_r2, val_map, ...); which one
# fits is known once the task is, so the name is checked again by resolve_objectives.
_METRIC_OBJECTIVE = r"^val_[a-z][a-z0-9_]*$"

#: Every objective a search can optimise, with its natural direction.
OBJECTIVE_MODES: dict[str, Literal["min", "max"]] = {
    "val_acc": "max",
    "params": "min",
    "macs": "min",
    "size_bytes": "min",
    "latency_ms": "min",
    "latency_batch_ms": "min",
}

#: Constraint key -> the metric it bounds from above.
CONSTRAINT_METRICS: dict[str, str] = {
    "max_params": "params",
    "max_macs": "macs",
    "max_size_bytes": "size_bytes",
    "max_latency_ms": "latency_ms",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A quoted number (``max: '5'``) is an error, not converted.
    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_strings(cls, value: Any, info: ValidationInfo) -> Any:
        return _refuse_quoted_number(cls, value, info)


class ObjectiveSpec(_Strict):
    """One objective of the search and its direction."""

    name: str = Field(
        description="The task's metric (val_acc for classification, val_r2 for regression, "
        "val_map for multilabel), params, macs, size_bytes, latency_ms (batch 1) or "
        "latency_batch_ms."
    )
    mode: Literal["min", "max"] | None = Field(
        default=None,
        description="Direction; default and only valid value: the metric's own direction "
        "(max for val_acc), min for the costs.",
    )

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        if value not in OBJECTIVE_MODES and not re.match(_METRIC_OBJECTIVE, value):
            raise ValueError(
                f"unknown objective {value!r}: use the task's metric (val_acc, val_r2, "
                f"val_map, ...) or one of {', '.join(k for k in OBJECTIVE_MODES if k != 'val_acc')}"
            )
        return value

    @model_validator(mode="after")
    def _natural_mode(self) -> ObjectiveSpec:
        natural = OBJECTIVE_MODES.get(self.name)
        if natural is None:  # a task's metric: its direction is checked with the task
            return self
        if self.mode is None:
            self.mode = natural
        elif self.mode != natural:
            raise ValueError(
                f"objective {self.name!r} can only be "
                f"{'maximised' if natural == 'max' else 'minimised'} "
                f"(mode: {natural}), got mode: {self.mode}"
            )
        return self


def default_objectives() -> list[ObjectiveSpec]:
    """A single objective: validation accuracy (the classic search)."""
    return [ObjectiveSpec(name="val_acc", mode="max")]


def check_objectives(objectives: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
    """Validate an objectives list: not empty, names unique, ``val_acc`` present.

    Raises:
        ValueError: naming the problem (pydantic turns it into a ConfigError).
    """
    names = [o.name for o in objectives]
    if not names:
        raise ValueError("give at least one objective, e.g. [{name: val_acc}]")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"objectives listed twice: {duplicates}")
    if not any(name.startswith("val_") for name in names):
        raise ValueError(
            "objectives must include the task's metric (val_acc for classification): "
            "the students are trained for it"
        )
    return objectives


def resolve_objectives(
    objectives: list[ObjectiveSpec], metric: TaskMetric, *, explicit: bool, task: str
) -> list[ObjectiveSpec]:
    """The objectives for a search whose task selects by ``metric``.

    Args:
        objectives: The config's list (the default one is ``[val_acc]``).
        metric: The task's selection metric.
        explicit: Whether the config gave ``objectives``; the default list becomes
            ``[val_<metric>]``.
        task: The task's name, for messages.

    Raises:
        ConfigError: a ``val_*`` objective that is not the task's metric, or in the
            wrong direction.
    """
    if not explicit:
        return [ObjectiveSpec(name=metric.val, mode=metric.mode)]
    resolved = []
    for spec in objectives:
        if not spec.name.startswith("val_"):
            resolved.append(spec)
            continue
        if spec.name != metric.val:
            raise ConfigError(
                f"objectives: {spec.name} is not a metric task {task!r} selects by",
                hint=f"use {metric.val} (the task's metric) in objectives",
            )
        if spec.mode not in (None, metric.mode):
            raise ConfigError(
                f"objectives: {spec.name} can only be "
                f"{'maximised' if metric.higher_is_better else 'minimised'} (mode: {metric.mode})"
            )
        resolved.append(ObjectiveSpec(name=metric.val, mode=metric.mode))
    return resolved


class ConstraintSettings(_Strict):
    """Hard limits: a sampled student that exceeds one is rejected before training."""

    max_params: int | None = Field(
        default=None, ge=1, description="Most parameters a student may have."
    )
    max_macs: int | None = Field(
        default=None, ge=1, description="Most multiply-accumulates per example (batch 1)."
    )
    max_size_bytes: int | None = Field(
        default=None, ge=1, description="Most bytes of parameters and buffers."
    )
    max_latency_ms: float | None = Field(
        default=None,
        gt=0,
        description="Slowest ONNX batch-1 latency (ms, onnxruntime CPU); measured per trial.",
    )

    def limits(self) -> dict[str, float]:
        """The set limits, keyed by the metric they bound (``params``, ``latency_ms``, ...)."""
        return {
            metric: float(value)
            for key, metric in CONSTRAINT_METRICS.items()
            if (value := getattr(self, key)) is not None
        }


class LatencySettings(_Strict):
    """How latency is measured: ONNX export, onnxruntime on the CPU."""

    batch_size: int = Field(default=32, ge=1, description="The batch measured besides batch 1.")
    repeats: int = Field(
        default=30, ge=1, description="Timed runs per batch size; the median is kept."
    )
    warmup: int = Field(default=5, ge=0, description="Untimed runs before timing.")
    threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads.")
    measure_front: bool = Field(
        default=True,
        description="After a multi-objective search, measure the Pareto-front students' "
        "latency (when no objective or constraint made every trial measure it).",
    )
