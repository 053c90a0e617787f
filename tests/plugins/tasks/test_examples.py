"""Every built-in task has an example config in examples/tasks/, and each one is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.config import load_search_config, load_teacher_config
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.resolve import check_loss_fits_task, instantiate

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tasks"
SEARCH_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.stem.endswith("-teacher"))


def test_one_example_per_builtin_task() -> None:
    builtin = {
        r.name for r in get_registry().list("task") if r.cls.__module__.startswith("kdforge.")
    }
    assert {p.stem for p in SEARCH_EXAMPLES} == builtin


@pytest.mark.parametrize("path", SEARCH_EXAMPLES, ids=lambda p: p.stem)
def test_example_is_a_valid_search_config_whose_loss_fits_its_task(path: Path) -> None:
    config = load_search_config(path)
    assert config.task is not None and config.task.name == path.stem
    task = instantiate("task", config.task, "task")  # its params validate
    loss = config.loss.name if "loss" in config.model_fields_set else task.default_loss
    check_loss_fits_task(loss, config.loss.params, task)


def test_teacher_example_is_valid() -> None:
    config = load_teacher_config(EXAMPLES / "language_modeling-teacher.yaml")
    assert config.task is not None and config.task.name == "language_modeling"
