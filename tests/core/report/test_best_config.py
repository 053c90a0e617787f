"""best_config.yaml: a search config that trains the chosen student again, as is.

``student.fixed`` (a :class:`~kdforge.report.best_config.FixedArchitecture`), numbers in
``loss.hparams`` and ``search.lr`` with ``low == high`` leave the sampler nothing to
choose; the real-server test runs such a file end to end.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from kdforge.config import SearchConfig, load_search_config
from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.report.leaderboard import TrialRow

INFO = DataInfo(name="digits", input_shape=(1, 8, 8), num_classes=10)
ARCH = {"depth": 2, "width_0": 11, "width_1": 9, "dropout": 0.1}


def _config(**student) -> SearchConfig:
    raw = {
        "name": "demo",
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint", "params": {"path": "teacher.pt"}},
        "student": {"name": "mlp", "params": {"max_depth": 2}, **student},
        "search": {"num_trials": 8, "time_budget_s": 60},
    }
    return SearchConfig.model_validate(raw)


def _best() -> TrialRow:
    return TrialRow(
        number=5,
        trial_id="t5",
        status="finished",
        params=900,
        val_acc=0.9,
        test_acc=0.88,
        epochs=4,
        lr=0.0123,
        loss_hparams={"temperature": 3.3, "alpha": 0.4},
        arch=dict(ARCH),
    )


def _sample(config: SearchConfig) -> tuple[dict, dict]:
    """One define-by-run call on a fresh Optuna trial: (constants, sampled params)."""
    from kdforge.search.plan import plan_search
    from kdforge.search.sampler import DefineByRun

    trial = optuna.create_study().ask()
    plan = plan_search(config)
    constants = DefineByRun(plan.space, INFO, config.search.lr, plan.loss_settings)(trial)
    return constants or {}, dict(trial.params)


def test_best_config_fixes_every_sampled_value(tmp_path: Path) -> None:
    from kdforge.report.best_config import write_best_config

    path = write_best_config(_config(), _best(), tmp_path / "best_config.yaml", search_dir=tmp_path)
    text = path.read_text()
    assert text.startswith("# Trains trial 005") and "kdforge search best_config.yaml" in text
    config = load_search_config(path)
    assert config.student.fixed == ARCH and config.student.params == {"max_depth": 2}
    assert config.loss.hparams == {"temperature": 3.3, "alpha": 0.4}
    assert config.search.lr.low == config.search.lr.high == 0.0123
    assert config.search.num_trials == 1 and config.search.time_budget_s is None
    assert config.name == "demo" and config.teacher.params == {"path": "teacher.pt"}


def test_a_fixed_student_samples_nothing_but_the_degenerate_lr(tmp_path: Path) -> None:
    from kdforge.report.best_config import best_search_config

    raw = best_search_config(_config(), _best())
    constants, sampled = _sample(SearchConfig.model_validate(raw))
    assert {k.removeprefix("student/"): v for k, v in constants.items() if "student/" in k} == ARCH
    assert constants["loss/temperature"] == 3.3 and constants["loss/alpha"] == 0.4
    assert sampled == {"lr": 0.0123}


def test_without_fixed_the_space_is_sampled() -> None:
    constants, sampled = _sample(_config())
    assert "student/depth" in sampled and not any(k.startswith("student/") for k in constants)


def test_a_fixed_architecture_the_space_cannot_build_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"student\.fixed: search space 'mlp' cannot build"):
        _sample(_config(fixed={"depth": 2, "width_0": 8}))  # width_1 missing


def test_an_empty_fixed_architecture_is_rejected() -> None:
    from kdforge.search.plan import plan_search

    with pytest.raises(ConfigError, match=r"student\.fixed: empty"):
        plan_search(_config(fixed={}))


def test_fixed_is_documented_and_dumped_as_yaml() -> None:
    from kdforge.config.docs import render_config_docs

    assert "`student.fixed`" in render_config_docs()
    assert "`export.promote`" in render_config_docs()
    dumped = yaml.safe_load(yaml.safe_dump(_config(fixed=ARCH).model_dump(mode="json")))
    assert dumped["student"]["fixed"] == ARCH


def test_initial_points_are_dropped_so_the_file_runs_as_is() -> None:
    from kdforge.report.best_config import best_search_config
    from kdforge.search.plan import plan_search

    config = SearchConfig.model_validate(
        {
            **_config().model_dump(mode="json"),
            "search": {
                "num_trials": 8,
                "initial_points": [{"student": {"depth": 1, "width_0": 16}, "lr": 0.01}],
            },
        }
    )
    plan_search(config)  # the search's own points are valid
    raw = best_search_config(config, _best())
    assert raw["search"]["initial_points"] == []
    plan_search(SearchConfig.model_validate(raw))  # and the re-run config still plans
