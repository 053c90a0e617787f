"""``search.initial_points``: fixed configurations the first trials evaluate.

Points are written the user's way (``{student: {depth: 2}, loss: {alpha: 0.5}, lr:
0.003}``), checked against the student space, the loss's searched hyperparameters and
``search.lr``, and flattened to the names :class:`kdforge.search.sampler.DefineByRun`
suggests, so Optuna hands the enqueued values back to it (``points_to_evaluate``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from kdforge.config import Range, SearchConfig
from kdforge.data import DataInfo, HParam
from kdforge.errors import ConfigError, KDForgeError, closest_match
from kdforge.interfaces import SearchSpace

#: The loss's declared hyperparameters with their fixed values or searched ranges.
LossSettings = list[tuple[HParam, float | Range]]

__all__ = ["check_initial_points", "flatten_initial_point", "initial_points_for_search"]

_POINT_KEYS = ("student", "loss", "lr")


def flatten_initial_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """One initial point, written the user's way, under the sampler's flat names.

    ``{"student": {"depth": 2}, "loss": {"alpha": 0.5}, "lr": 0.003}`` becomes
    ``{"student/depth": 2, "loss/alpha": 0.5, "lr": 0.003}``: the names
    :class:`DefineByRun` suggests, so Optuna hands the enqueued values back to it. A
    section left out (or null) is left to the sampler.

    Args:
        point: A point with optional ``student`` and ``loss`` mappings and ``lr``.
    """
    flat: dict[str, Any] = {}
    for section in ("student", "loss"):
        for key, value in (point.get(section) or {}).items():
            flat[f"{section}/{key}"] = value
    if point.get("lr") is not None:
        flat["lr"] = point["lr"]
    return flat


def check_initial_points(config: SearchConfig, loss_settings: LossSettings) -> None:
    """Check what of ``search.initial_points`` the data does not decide.

    The point's keys, its loss hyperparameters, its learning rate and the number of
    points; the student values are checked by :func:`initial_points_for_search`.

    Raises:
        ConfigError: naming the point and key (``search.initial_points[1].loss.alpha``).
    """
    for index, point in enumerate(config.search.initial_points):
        _checked_point_settings(config, loss_settings, point, f"search.initial_points[{index}]")
    points = len(config.search.initial_points)
    trials = config.search.num_trials
    if points > trials:
        raise ConfigError(
            f"search.initial_points: {points} points but search.num_trials is {trials}; "
            f"each point is one trial, so the last {points - trials} would never run",
            hint=f"raise search.num_trials to at least {points}, or drop points",
        )


def initial_points_for_search(
    config: SearchConfig, space: SearchSpace, loss_settings: LossSettings, info: DataInfo
) -> list[dict[str, Any]]:
    """``search.initial_points`` checked against the student space, flattened for Optuna.

    Each point's student values are run through the space's own ``suggest`` (with a
    stand-in trial that answers with the point's values), so a key is accepted only if
    the space suggests it for that point (``width_1`` needs ``depth >= 2``) and a value
    only if it lies in the suggested range or choices. Values come back with the type
    the space asks for (``64.0`` for an int becomes ``64``).

    Args:
        config: The search config (``search.initial_points``, ``search.lr``, ...).
        space: The student space, already bound to the teacher if it binds.
        loss_settings: The loss's hyperparameters, fixed or searched.
        info: The loaded data's info, as the space's ``suggest`` receives it.

    Returns:
        One dict per point, ``{"student/depth": 2, "loss/alpha": 0.5, "lr": 0.003}``.

    Raises:
        ConfigError: naming the point and key, e.g.
            ``search.initial_points[1].student.widht_0: not a parameter of student
            space 'mlp'; did you mean 'width_0'?``.
    """
    points: list[dict[str, Any]] = []
    for index, point in enumerate(config.search.initial_points):
        where = f"search.initial_points[{index}]"
        checked = _checked_point_settings(config, loss_settings, point, where)
        student = point.get("student")
        if student:
            checked["student"] = _checked_student(
                config.student.name, space, student, info, f"{where}.student"
            )
        points.append(flatten_initial_point(checked))
    return points


def _require_mapping(value: Any, where: str, what: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {what}, got {value!r}")


def _checked_point_settings(
    config: SearchConfig, loss_settings: LossSettings, point: Any, where: str
) -> dict[str, Any]:
    """The point's keys, loss hyperparameters and lr checked (student values as given)."""
    if not isinstance(point, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping with keys {', '.join(_POINT_KEYS)}, "
            f"got {type(point).__name__}"
        )
    for key in point:
        if key not in _POINT_KEYS:
            suggestion = closest_match(str(key), _POINT_KEYS)
            tip = f" (did you mean {suggestion!r}?)" if suggestion else ""
            raise ConfigError(f"{where}.{key}: unknown key{tip}; allowed: {', '.join(_POINT_KEYS)}")
    checked: dict[str, Any] = {}
    student = point.get("student")
    if student is not None:
        _require_mapping(student, f"{where}.student", "the space's values (e.g. {depth: 2})")
        if student and config.student.fixed is not None:
            raise ConfigError(
                f"{where}.student: student.fixed is set, so no student value is searched",
                hint="leave student out of the points, or remove student.fixed",
            )
        checked["student"] = dict(student)
    loss = point.get("loss")
    if loss is not None:
        _require_mapping(loss, f"{where}.loss", "searched loss hyperparameters (e.g. {alpha: 0.5})")
        checked["loss"] = {
            key: _checked_loss_value(config, loss_settings, str(key), value, f"{where}.loss.{key}")
            for key, value in loss.items()
        }
    lr = point.get("lr")
    if lr is not None:
        bounds = config.search.lr
        value = _number(lr)
        if value is None:
            raise ConfigError(f"{where}.lr: expected a number, got {lr!r}")
        if not bounds.low <= value <= bounds.high:
            raise ConfigError(
                f"{where}.lr: {value:g} is outside search.lr [{bounds.low:g}, {bounds.high:g}]"
            )
        checked["lr"] = value
    return checked


def _checked_loss_value(
    config: SearchConfig, loss_settings: LossSettings, name: str, value: Any, where: str
) -> float | int:
    """A loss hyperparameter of a point: searched (a Range) and inside that range."""
    settings = {hp.name: (hp, setting) for hp, setting in loss_settings}
    loss_name = config.loss.name
    searched = [n for n, (_, setting) in settings.items() if isinstance(setting, Range)]
    if name not in settings:
        suggestion = closest_match(name, settings)
        tip = (
            f"; did you mean {suggestion!r}?"
            if suggestion
            else f"; its searched hyperparameters: {', '.join(searched) or 'none'}"
        )
        raise ConfigError(f"{where}: loss {loss_name!r} has no hyperparameter {name!r}{tip}")
    hp, setting = settings[name]
    if not isinstance(setting, Range):
        # Fixed values are constants of every trial, never suggested: Optuna would
        # silently ignore an enqueued value for them.
        origin = (
            f"loss.hparams.{name}"
            if name in config.loss.hparams
            else f"loss {loss_name!r} (its declared range is that single value)"
        )
        raise ConfigError(
            f"{where}: fixed to {float(setting):g} by {origin}, so it is not searched",
            hint=f"leave {name} out of the point, or give loss.hparams.{name} a range "
            "{low, high} to search it",
        )
    number = _number(value)
    if hp.kind == "int":
        whole = _integer(value)
        if whole is None:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        number = float(whole)
    if number is None:
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not setting.low <= number <= setting.high:
        raise ConfigError(
            f"{where}: {number:g} is outside the searched range "
            f"[{setting.low:g}, {setting.high:g}] of loss {loss_name!r}"
        )
    return int(number) if hp.kind == "int" else number


def _checked_student(
    space_name: str, space: SearchSpace, values: Mapping[str, Any], info: DataInfo, where: str
) -> dict[str, Any]:
    """A point's student values, checked by running the space's ``suggest`` on them."""
    trial = _PointTrial(values, f"student space {space_name!r}")
    try:
        space.suggest(trial, info)  # type: ignore[arg-type]
    except KDForgeError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot check the point against student space {space_name!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if trial.errors:
        name, message = trial.errors[0]
        raise ConfigError(f"{where}.{name}: {message}")
    unknown = [key for key in values if key not in trial.suggested]
    if unknown:
        key = str(unknown[0])
        names = ", ".join(trial.suggested) or "none"
        every = _space_parameter_names(space, info)
        if key in every:
            # Conditional (width_1 needs depth >= 2): judged on the point's own values,
            # a left-out one counting as its lowest choice; say which were left out.
            defaulted = ", ".join(f"{k}={v!r}" for k, v in trial.defaulted.items())
            raise ConfigError(
                f"{where}.{key}: not a parameter of student space {space_name!r} with this "
                f"point's values; this point has: {names}",
                hint="which parameters exist depends on the point's other values"
                + (f"; left out, so taken as {defaulted} here" if defaulted else ""),
            )
        suggestion = closest_match(key, [*trial.suggested, *every])
        tip = (
            f"; did you mean {suggestion!r}?"
            if suggestion
            else f"; its parameters: {', '.join(every) or names}"
        )
        raise ConfigError(f"{where}.{key}: not a parameter of student space {space_name!r}{tip}")
    return {key: trial.params[key] for key in values}


def _space_parameter_names(space: SearchSpace, info: DataInfo) -> list[str]:
    """The names the space suggests at its smallest and at its largest (best effort).

    Tells a misspelt key from a conditional one that this point's values leave out.
    """
    names: dict[str, None] = {}
    for highest in (False, True):
        probe = _PointTrial({}, "", highest=highest)
        try:
            space.suggest(probe, info)  # type: ignore[arg-type]
        except Exception:  # a probe only improves the message; the point's run decides
            continue
        names.update(dict.fromkeys(probe.suggested))
    return list(names)


class _PointTrial:
    """A stand-in Optuna trial: answers with a point's values, records every suggestion.

    A value the point leaves out (or gets wrong) is answered with the distribution's
    low end or first choice (``highest``: high end or last choice), so the space goes
    on and the point's other keys can be judged.
    """

    def __init__(self, values: Mapping[str, Any], owner: str, *, highest: bool = False) -> None:
        self._values = values
        self._owner = owner
        self._highest = highest
        self.suggested: list[str] = []  # the names, in the order suggested
        self.params: dict[str, Any] = {}  # what each suggest_* returned
        self.defaulted: dict[str, Any] = {}
        self.errors: list[tuple[str, str]] = []
        self.user_attrs: dict[str, Any] = {}
        self.number = 0

    def set_user_attr(self, key: str, value: Any) -> None:
        """Kept, as Optuna's trial does (a space may note things on the trial)."""
        self.user_attrs[key] = value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        """The point's integer, if it is one of ``low, low + step, ..., high``."""
        grid = f" in steps of {step}" if step != 1 else ""
        described = f"[{low}, {high}]{grid}"

        def check(value: Any) -> tuple[Any, str | None]:
            whole = _integer(value)
            if whole is None:
                return None, f"expected an integer in {described}, got {value!r}"
            if not low <= whole <= high or (whole - low) % step:
                return None, f"{whole} is outside the range {described} of {self._owner}"
            return whole, None

        return self._answer(name, (int(low), int(high)), check)

    def suggest_float(
        self,
        name: str,
        low: float,
        high: float,
        step: float | None = None,
        log: bool = False,
    ) -> float:
        """The point's number, if it lies in ``[low, high]`` (on the step grid, if any)."""
        grid = f" in steps of {step:g}" if step else ""
        described = f"[{low:g}, {high:g}]{grid}"

        def check(value: Any) -> tuple[Any, str | None]:
            number = _number(value)
            if number is None:
                return None, f"expected a number in {described}, got {value!r}"
            units = (number - low) / step if step else 0.0
            off_grid = not math.isclose(units, round(units), abs_tol=1e-8)
            if not low <= number <= high or off_grid:
                return None, f"{number:g} is outside the range {described} of {self._owner}"
            return number, None

        return self._answer(name, (float(low), float(high)), check)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        """The choice equal to the point's value (``True`` does not stand for ``1``)."""
        options = list(choices)

        def check(value: Any) -> tuple[Any, str | None]:
            for option in options:
                if option == value and isinstance(option, bool) == isinstance(value, bool):
                    return option, None
            return None, f"{value!r} is not one of the choices {options!r} of {self._owner}"

        ends = (options[0], options[-1]) if options else (None, None)
        return self._answer(name, ends, check)

    def _answer(
        self,
        name: str,
        ends: tuple[Any, Any],
        check: Callable[[Any], tuple[Any, str | None]],
    ) -> Any:
        if name in self.params:  # Optuna answers a repeated name with the same value
            return self.params[name]
        self.suggested.append(name)
        default = ends[1] if self._highest else ends[0]
        value = default
        if name in self._values:
            accepted, error = check(self._values[name])
            if error is None:
                value = accepted
            else:
                self.errors.append((name, error))
        else:
            self.defaulted[name] = default
        self.params[name] = value
        return value


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _integer(value: Any) -> int | None:
    """``value`` as an int (``64.0`` counts), or None."""
    number = _number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)
