"""The Optuna searcher of a search: the define-by-run space, objectives, constraints, sampler.

:class:`DefineByRun` is the function Optuna calls for every new trial: it samples the
student (through the space's ``suggest``, names prefixed ``student/``), the loss's
searched hyperparameters (``loss/<name>``) and the learning rate (``lr``).

With one objective (the task's metric: ``val_acc`` for classification) the searcher
optimises it with TPE. With several,
``OptunaSearch`` gets metric and mode *lists* and Optuna's NSGA-II sampler (or TPE,
which also handles several objectives, when ``search.sampler: tpe``). Either way the
early-stopping scheduler (ASHA) ranks trials on one scalar only: the task's metric
(``val_acc``), its best validation value so far, so a small student is stopped early
only when that value is among the worst at that epoch.

Constraint values reach Optuna through ``Trial.set_constraint`` (value / limit - 1,
<= 0 feasible) when a trial completes, so TPE and NSGA-II prefer feasible students.

Like :mod:`kdforge.search.callbacks`, this module imports Ray at the top: its searcher
class must be importable by name for Tune's experiment checkpoints.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from kdforge.config import Range, SearchConfig
from kdforge.data import DataInfo
from kdforge.interfaces import PrefixedTrial, SearchSpace
from kdforge.objectives.constraints import constraint_excess
from kdforge.search.initial_points import LossSettings
from kdforge.search.trial import FAILED

__all__ = [
    "ConstrainedOptunaSearch",
    "DefineByRun",
    "make_sampler",
    "make_searcher",
    "searcher_metric_mode",
]


class DefineByRun:
    """The define-by-run function OptunaSearch calls for every new trial.

    A module-level class (not a closure) so Ray can pickle it with the searcher's
    state for experiment checkpoints and resume.

    Args:
        space: The student search space.
        info: The data description its ``suggest`` receives.
        lr: The learning-rate range (``search.lr``).
        loss_settings: The loss's hyperparameters, fixed or searched.
    """

    def __init__(
        self, space: SearchSpace, info: DataInfo, lr: Range, loss_settings: LossSettings
    ) -> None:
        self.space = space
        self.info = info
        self.lr = lr
        self.loss_settings = loss_settings

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        """Sample the student, the loss hyperparameters and the learning rate."""
        constants: dict[str, Any] = {}
        extra = self.space.suggest(PrefixedTrial(trial, "student/"), self.info)  # type: ignore[arg-type]
        # Constants are returned with flat "student/<key>" names: a nested "student"
        # dict would replace the sampled "student/*" values when Ray unflattens them.
        for key, value in (extra or {}).items():
            constants[f"student/{key}"] = value
        fixed: dict[str, float] = {}
        for hp, setting in self.loss_settings:
            if isinstance(setting, Range):
                name = f"loss/{hp.name}"
                if hp.kind == "int":
                    trial.suggest_int(name, int(setting.low), int(setting.high), log=setting.log)
                else:
                    trial.suggest_float(name, setting.low, setting.high, log=setting.log)
            else:
                fixed[hp.name] = float(setting)
        for key, value in fixed.items():
            constants[f"loss/{key}"] = value
        trial.suggest_float("lr", self.lr.low, self.lr.high, log=self.lr.log)
        return constants or None


def searcher_metric_mode(config: SearchConfig) -> tuple[str | list[str], str | list[str]]:
    """``(metric, mode)`` for OptunaSearch: plain strings for one objective, else lists."""
    names: list[str] = [o.name for o in config.objectives]
    modes = [str(o.mode) for o in config.objectives]
    if len(names) == 1:
        return names[0], modes[0]
    return names, modes


def make_sampler(config: SearchConfig) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``search.sampler`` (``auto``: TPE, or NSGA-II if several objectives).

    NSGA-II's population is ``num_trials // 2`` clipped to [4, 50], so small searches
    still see more than one generation.
    """
    settings = config.search
    several = len(config.objectives) > 1
    choice = settings.sampler
    if choice == "auto":
        choice = "nsga2" if several else "tpe"
    if choice == "random":
        return optuna.samplers.RandomSampler(seed=config.seed)
    if choice == "nsga2":
        population = min(50, max(4, settings.num_trials // 2))
        return optuna.samplers.NSGAIISampler(seed=config.seed, population_size=population)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate TPE is flagged experimental
        return optuna.samplers.TPESampler(seed=config.seed, multivariate=True)


class ConstrainedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that hands each trial's constraint values to Optuna.

    Args:
        limits: Metric -> largest allowed value (the config's ``constraints``).
        *args: Passed to ``OptunaSearch``.
        **kwargs: Passed to ``OptunaSearch``.
    """

    def __init__(self, *args: Any, limits: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kdforge_limits = dict(limits or {})

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Set ``value / limit - 1`` per limit on the Optuna trial, then tell Optuna."""
        # Ray's OptunaSearch offers no public way to reach the Optuna trial it made for a
        # Tune trial; tests/test_private_apis.py fails if this attribute goes away.
        if result and result.get("kdforge_status") == FAILED:
            # A trial that failed reports it as its last result: Optuna records a failure.
            super().on_trial_complete(trial_id, None, error=True)
            return
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and self._kdforge_limits and result:
            for name, value in constraint_excess(result, self._kdforge_limits).items():
                ot_trial.set_constraint(name, value)
        super().on_trial_complete(trial_id, result, error)


def make_searcher(
    config: SearchConfig,
    space: Callable[[Any], dict[str, Any] | None],
    points_to_evaluate: list[dict[str, Any]] | None = None,
) -> ConstrainedOptunaSearch:
    """An Optuna searcher over the define-by-run ``space`` for the config's objectives.

    Args:
        config: The search config (objectives, sampler, constraints).
        space: The define-by-run function (:class:`DefineByRun`).
        points_to_evaluate: ``search.initial_points`` under the sampler's flat names
            (``student/depth``, ``loss/alpha``, ``lr``): Ray enqueues them in the Optuna
            study, so the first trials get their values and the sampler fills the rest.
    """
    # OptunaSearch creates its study now; Optuna's INFO lines would break kdforge's output.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric, mode = searcher_metric_mode(config)
    extra: dict[str, Any] = {}
    if points_to_evaluate:
        # Copies: Ray keeps the list in the searcher's pickled state.
        extra["points_to_evaluate"] = [dict(point) for point in points_to_evaluate]
    return ConstrainedOptunaSearch(
        space=space,
        metric=metric,
        mode=mode,
        sampler=make_sampler(config),
        limits=config.constraints.limits(),
        **extra,
    )
