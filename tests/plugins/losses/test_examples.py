"""Every built-in loss has an example config in examples/losses/, and each one is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.config import load_search_config, load_teacher_config
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.resolve import loss_hparams, loss_needs

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "losses"
SEARCH_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name != "cnn-teacher.yaml")


def test_one_example_per_builtin_loss() -> None:
    builtin = {
        r.name for r in get_registry().list("loss") if r.cls.__module__.startswith("kdforge.")
    }
    assert {p.stem for p in SEARCH_EXAMPLES} == builtin


@pytest.mark.parametrize("path", SEARCH_EXAMPLES, ids=lambda p: p.stem)
def test_example_is_a_valid_search_config(path: Path) -> None:
    config = load_search_config(path)
    assert config.loss.name == path.stem
    settings = loss_hparams(config.loss)
    assert settings, "an example should show searched or fixed hyperparameters"
    loss_needs(config.loss)


def test_cnn_teacher_example_is_valid() -> None:
    assert load_teacher_config(EXAMPLES / "cnn-teacher.yaml").architecture.name == "cnn"
