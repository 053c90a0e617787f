"""The numeric ranges a search sampled, for :func:`kdforge.report.bounds.crowded_bounds`.

The learning rate and the loss hyperparameters come from the config; the student's
ranges are found by sampling the (teacher-bound) space a few times with Optuna, as
``kdforge plugins show`` does, since a define-by-run space declares them only when it
samples.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import FloatDistribution, IntDistribution

from kdforge.config import Range
from kdforge.data import DataInfo
from kdforge.report.bounds import SearchedRange
from kdforge.search.plan import SearchPlan

__all__ = ["searched_ranges"]

_SAMPLES = 24


def searched_ranges(plan: SearchPlan, info: DataInfo) -> list[SearchedRange]:
    """Every numeric range the search sampled: ``lr``, ``loss.*``, ``student.*``."""
    config = plan.config
    out = []
    lr = config.search.lr
    if lr.high > lr.low:
        out.append(SearchedRange("lr", lr.low, lr.high, lr.log, "search.lr"))
    for hp, setting in plan.loss_settings:
        if isinstance(setting, Range) and setting.high > setting.low:
            where = f"loss.hparams.{hp.name}"
            out.append(
                SearchedRange(f"loss.{hp.name}", setting.low, setting.high, setting.log, where)
            )
    out += _student_ranges(plan, info)
    return out


def _student_ranges(plan: SearchPlan, info: DataInfo) -> list[SearchedRange]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, Any] = {}
    try:
        for _ in range(_SAMPLES):
            trial = study.ask()
            plan.space.suggest(trial, info)
            for name, dist in trial.distributions.items():
                seen.setdefault(name, dist)
            study.tell(trial, 0.0)
    except Exception:  # a space that cannot be sampled here only loses the warning
        return []
    where = f"student.params of space {plan.config.student.name!r}"
    return [
        SearchedRange(f"student.{name}", float(d.low), float(d.high), bool(d.log), where)
        for name, d in seen.items()
        if isinstance(d, IntDistribution | FloatDistribution) and d.high > d.low
    ]
