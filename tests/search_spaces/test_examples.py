"""Every example config of examples/search_spaces/ is valid, down to its space's params."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.config import load_search_config, load_teacher_config
from kdforge.plugin_host.resolve import instantiate

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "search_spaces"
SEARCHES = sorted(p for p in FOLDER.glob("*.yaml") if not p.stem.endswith("-teacher"))


def test_one_example_per_builtin_space() -> None:
    spaces = {load_search_config(p).student.name for p in SEARCHES}
    assert spaces == {"mlp", "cnn", "resnet", "transformer", "pruned", "choice", "hf_lm"}


@pytest.mark.parametrize("path", SEARCHES, ids=lambda p: p.stem)
def test_example_is_valid(path: Path) -> None:
    config = load_search_config(path)
    instantiate("search_space", config.student, "student")  # params validated by the plugin


def test_transformer_teacher_example_builds_with_the_space() -> None:
    from kdforge.data import DataInfo

    config = load_teacher_config(FOLDER / "transformer-teacher.yaml")
    space = instantiate("search_space", config.architecture.__class__(name="transformer"), "x")
    model = space.build(dict(config.architecture.params), DataInfo("digits", (1, 8, 8), 10))
    assert len(model.layers) == config.architecture.params["layers"]
