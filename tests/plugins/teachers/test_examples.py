"""Every example config in examples/teachers/ validates and resolves its plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.config import load_search_config, load_teacher_config
from kdforge.search.plan import plan_search

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "teachers"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_config_is_valid(path: Path) -> None:
    if path.name == "registered-teacher.yaml":
        assert load_teacher_config(path).registered_model_name
        return
    plan = plan_search(load_search_config(path))  # plugins resolved, params validated
    assert plan.teacher.name == path.stem
