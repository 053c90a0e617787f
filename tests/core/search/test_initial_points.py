"""``search.initial_points``: fixed configurations the first trials evaluate.

Points are written nested (``student``, ``loss``, ``lr``), checked against the space,
the searched loss hyperparameters and ``search.lr`` before anything trains, flattened
to the sampler's names and enqueued in the Optuna study by Ray's ``OptunaSearch``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdforge.config import SearchConfig
from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.search.initial_points import flatten_initial_point, initial_points_for_search
from kdforge.search.plan import SearchPlan, plan_search
from tests.conftest import tiny_search_config

INFO = DataInfo(name="digits", input_shape=(1, 8, 8), num_classes=10)


def _config(points: list[Any], **overrides: Any) -> SearchConfig:
    raw: dict[str, Any] = {
        "name": "points",
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint", "params": {"path": "teacher.pt"}},
        "student": {"name": "mlp", "params": {"max_depth": 2, "max_width": 32}},
        "loss": {"name": "hinton_kd", "hparams": {"alpha": 0.5}},  # temperature searched
        "search": {
            "num_trials": 4,
            "lr": {"low": 1e-3, "high": 1e-1, "log": True},
            "initial_points": points,
        },
    }
    raw.update(overrides)
    return SearchConfig.model_validate(raw)


def _plan(points: list[Any], **overrides: Any) -> SearchPlan:
    return plan_search(_config(points, **overrides))


def _points(points: list[Any], **overrides: Any) -> list[dict[str, Any]]:
    plan = _plan(points, **overrides)
    return initial_points_for_search(plan.config, plan.space, plan.loss_settings, INFO)


# ---- flattening --------------------------------------------------------------------


def test_flatten_uses_the_names_the_define_by_run_function_suggests() -> None:
    point = {
        "student": {"depth": 2, "width_0": 64},
        "loss": {"temperature": 4.0, "alpha": 0.5},
        "lr": 0.003,
    }
    assert flatten_initial_point(point) == {
        "student/depth": 2,
        "student/width_0": 64,
        "loss/temperature": 4.0,
        "loss/alpha": 0.5,
        "lr": 0.003,
    }


def test_flatten_leaves_out_what_the_point_leaves_out() -> None:
    assert flatten_initial_point({"student": {"depth": 1}}) == {"student/depth": 1}
    assert flatten_initial_point({"lr": 0.01, "loss": None}) == {"lr": 0.01}
    assert flatten_initial_point({}) == {}


def test_a_valid_point_is_flattened_with_the_types_the_space_asks_for() -> None:
    points = _points(
        [
            {
                "student": {"depth": 2, "width_0": 16, "width_1": 8.0, "dropout": 0},
                "loss": {"temperature": 4},
                "lr": 0.003,
            },
            {"student": {"depth": 1}},  # partial: the sampler picks the rest
            {},
        ]
    )
    assert points == [
        {
            "student/depth": 2,
            "student/width_0": 16,
            "student/width_1": 8,
            "student/dropout": 0.0,
            "loss/temperature": 4.0,
            "lr": 0.003,
        },
        {"student/depth": 1},
        {},
    ]
    assert isinstance(points[0]["student/width_1"], int)
    assert isinstance(points[0]["student/dropout"], float)


def test_no_points_means_nothing_to_enqueue() -> None:
    assert _points([]) == []


def test_categorical_values_come_back_as_the_choice() -> None:
    cnn = {"name": "cnn", "params": {"max_depth": 2, "kernels": [3, 5]}}
    points = _points([{"student": {"depth": 1, "channels_0": 8, "kernel": 5.0}}], student=cnn)
    assert points == [{"student/depth": 1, "student/channels_0": 8, "student/kernel": 5}]
    assert isinstance(points[0]["student/kernel"], int)


# ---- validation errors -------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError) as err:
        _plan([{"studnet": {"depth": 1}}])
    assert str(err.value) == (
        "search.initial_points[0].studnet: unknown key (did you mean 'student'?); "
        "allowed: student, loss, lr"
    )


def test_a_section_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"initial_points\[0\]\.student: expected a mapping"):
        _plan([{"student": 3}])


def test_unknown_student_key_with_the_closest_match() -> None:
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"depth": 2}}, {"student": {"depth": 2, "widht_0": 16}}])
    assert str(err.value) == (
        "search.initial_points[1].student.widht_0: not a parameter of student space 'mlp'; "
        "did you mean 'width_0'?"
    )


def test_unknown_student_key_without_a_match_lists_the_parameters() -> None:
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"kernel": 3}}])
    assert str(err.value) == (
        "search.initial_points[0].student.kernel: not a parameter of student space 'mlp'; "
        "its parameters: depth, width_0, dropout, width_1"
    )


def test_a_conditional_key_is_judged_on_the_points_own_values() -> None:
    # width_1 exists only when depth >= 2.
    assert _points([{"student": {"depth": 2, "width_1": 16}}]) == [
        {"student/depth": 2, "student/width_1": 16}
    ]
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"depth": 1, "width_1": 16}}])
    assert str(err.value) == (
        "search.initial_points[0].student.width_1: not a parameter of student space 'mlp' "
        "with this point's values; this point has: depth, width_0, dropout"
    )
    # A left-out depth counts as its lowest value, and the hint says so.
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"width_1": 16}}])
    assert err.value.hint is not None and "depth=1" in err.value.hint


def test_int_out_of_range() -> None:
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"depth": 3}}])
    assert str(err.value) == (
        "search.initial_points[0].student.depth: 3 is outside the range [1, 2] of student "
        "space 'mlp'"
    )


def test_int_that_is_not_a_whole_number() -> None:
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"depth": 1.5}}])
    assert str(err.value) == (
        "search.initial_points[0].student.depth: expected an integer in [1, 2], got 1.5"
    )
    with pytest.raises(ConfigError, match=r"student\.depth: expected an integer.*got True"):
        _points([{"student": {"depth": True}}])


def test_float_out_of_range() -> None:
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"dropout": 0.9}}])
    assert str(err.value) == (
        "search.initial_points[0].student.dropout: 0.9 is outside the range [0, 0.3] of "
        "student space 'mlp'"
    )


def test_categorical_not_among_the_choices() -> None:
    cnn = {"name": "cnn", "params": {"kernels": [3, 5]}}
    with pytest.raises(ConfigError) as err:
        _points([{"student": {"kernel": 4}}], student=cnn)
    assert str(err.value) == (
        "search.initial_points[0].student.kernel: 4 is not one of the choices [3, 5] of "
        "student space 'cnn'"
    )


def test_student_values_with_a_fixed_architecture() -> None:
    fixed = {"name": "mlp", "fixed": {"depth": 1, "width_0": 8}}
    with pytest.raises(ConfigError) as err:
        _plan([{"student": {"depth": 1}}], student=fixed)
    assert str(err.value) == (
        "search.initial_points[0].student: student.fixed is set, so no student value is searched"
    )


def test_lr_out_of_bounds() -> None:
    with pytest.raises(ConfigError) as err:
        _plan([{"lr": 0.5}])
    assert str(err.value) == "search.initial_points[0].lr: 0.5 is outside search.lr [0.001, 0.1]"
    with pytest.raises(ConfigError, match=r"initial_points\[0\]\.lr: expected a number"):
        _plan([{"lr": "fast"}])


def test_loss_hparam_that_is_fixed() -> None:
    with pytest.raises(ConfigError) as err:
        _plan([{"loss": {"alpha": 0.3}}])
    assert str(err.value) == (
        "search.initial_points[0].loss.alpha: fixed to 0.5 by loss.hparams.alpha, so it is "
        "not searched"
    )
    assert err.value.hint is not None and "range" in err.value.hint


def test_loss_hparam_unknown() -> None:
    with pytest.raises(ConfigError) as err:
        _plan([{"loss": {"temprature": 3.0}}])
    assert str(err.value) == (
        "search.initial_points[0].loss.temprature: loss 'hinton_kd' has no hyperparameter "
        "'temprature'; did you mean 'temperature'?"
    )
    with pytest.raises(ConfigError) as err:
        _plan([{"loss": {"beta": 3.0}}])
    assert str(err.value) == (
        "search.initial_points[0].loss.beta: loss 'hinton_kd' has no hyperparameter 'beta'; "
        "its searched hyperparameters: temperature"
    )


def test_loss_hparam_out_of_its_searched_range() -> None:
    loss = {"name": "hinton_kd", "hparams": {"temperature": {"low": 2.0, "high": 8.0}}}
    with pytest.raises(ConfigError) as err:
        _plan([{"loss": {"temperature": 10.0}}], loss=loss)
    assert str(err.value) == (
        "search.initial_points[0].loss.temperature: 10 is outside the searched range [2, 8] "
        "of loss 'hinton_kd'"
    )


def test_more_points_than_trials() -> None:
    with pytest.raises(ConfigError) as err:
        _plan([{}] * 5)
    assert str(err.value).startswith(
        "search.initial_points: 5 points but search.num_trials is 4; each point is one trial"
    )


# ---- the searcher ------------------------------------------------------------------


@pytest.mark.parametrize("objectives", [None, [{"name": "val_acc"}, {"name": "params"}]])
def test_the_searcher_hands_out_the_points_first(objectives: list | None) -> None:
    """One objective (TPE) and two (NSGA-II): the first trials are the points."""
    from kdforge.search.sampler import make_searcher

    extra = {"objectives": objectives} if objectives else {}
    points = [
        {"student": {"depth": 2, "width_0": 16, "width_1": 8, "dropout": 0.1}, "lr": 0.003},
        {"student": {"depth": 1}, "loss": {"temperature": 2.5}},
    ]
    plan = _plan(points, **extra)
    searcher = make_searcher(
        plan.config,
        _define_by_run(plan),
        initial_points_for_search(plan.config, plan.space, plan.loss_settings, INFO),
    )
    first, second, third = (searcher.suggest(f"t{i}") for i in range(3))
    assert first is not None and second is not None and third is not None
    assert first["student"] == points[0]["student"] and first["lr"] == 0.003
    assert first["loss"]["alpha"] == 0.5  # fixed: a constant, not part of the point
    assert second["student"]["depth"] == 1 and second["loss"]["temperature"] == 2.5
    assert set(second["student"]) == {"depth", "width_0", "dropout"}  # the rest sampled
    assert third["lr"] != 0.003 or third["student"] != points[0]["student"]


def test_no_points_no_points_to_evaluate() -> None:
    from kdforge.search.sampler import make_searcher

    plan = _plan([])
    searcher = make_searcher(plan.config, _define_by_run(plan), [])
    assert not searcher._points_to_evaluate


# ---- through the search driver -----------------------------------------------------

POINTS = [
    {
        "student": {"depth": 1, "width_0": 8, "dropout": 0.0},
        "loss": {"temperature": 2.0, "alpha": 0.7},
        "lr": 0.01,
    },
    {
        "student": {"depth": 2, "width_0": 16, "width_1": 8, "dropout": 0.1},
        "loss": {"temperature": 4.0, "alpha": 0.5},
        "lr": 0.003,
    },
]


def test_a_bad_point_fails_before_the_teacher_runs(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    from kdforge.search.driver import run_search

    bad = [{"student": {"depth": 1, "width_1": 8}}]
    raw = tiny_search_config(digits_teacher_path, tmp_path, **{"search.initial_points": bad})
    lines: list[str] = []
    with pytest.raises(ConfigError, match=r"initial_points\[0\]\.student\.width_1"):
        run_search(SearchConfig.model_validate(raw), emit=lines.append)
    assert not any(line.startswith("teacher ") for line in lines)  # no teacher outputs
    assert not list((tmp_path / "runs").glob("*/*/tune"))  # Ray Tune never started


@pytest.mark.slow
def test_a_search_of_exactly_the_points_trains_exactly_them(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    import csv

    from kdforge.search.driver import run_search

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": len(POINTS),
            "search.epochs": 2,
            "search.grace_period": 2,
            "search.initial_points": POINTS,
            "baseline.enabled": False,
            "export.enabled": False,
        },
    )
    result = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    trained = sorted(
        ({"student": r.arch, "loss": r.loss_hparams, "lr": r.lr} for r in result.rows),
        key=lambda c: c["lr"] or 0.0,
    )
    assert trained == sorted(POINTS, key=lambda p: p["lr"])
    assert all(r.status == "finished" for r in result.rows)
    with (result.search_dir / "leaderboard.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert sorted(float(row["lr"]) for row in table) == [0.003, 0.01]
    assert sorted(row["student.depth"] for row in table) == ["1", "2"]


# ---- any point is checked or refused, never a crash --------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.lists(st.integers(0, 3), max_size=2),
)
_student = st.dictionaries(
    st.sampled_from(["depth", "width_0", "width_1", "width_2", "dropout", "x"]), _values
)
_loss = st.dictionaries(st.sampled_from(["temperature", "alpha", "beta"]), _values)
_point = st.dictionaries(
    st.sampled_from(["student", "loss", "lr", "seed"]),
    st.one_of(_values, _student, _loss),
    max_size=3,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(_point, max_size=3))
def test_any_point_is_accepted_or_a_config_error(points: list[dict[str, Any]]) -> None:
    loss = {"name": "hinton_kd", "hparams": {"alpha": {"low": 0.2, "high": 0.8}}}
    try:
        flat = _points(points, loss=loss)
    except ConfigError:
        return
    assert len(flat) == len(points)
    assert all(key.startswith(("student/", "loss/")) or key == "lr" for p in flat for key in p)


def _define_by_run(plan: Any) -> Any:
    from kdforge.search.sampler import DefineByRun

    return DefineByRun(plan.space, INFO, plan.config.search.lr, plan.loss_settings)
