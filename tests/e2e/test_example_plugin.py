"""The third-party example plugin (examples/plugins/kdforge-example-loss), end to end.

Installs it into the test venv (once for the module), checks discovery and inspection,
then runs a tiny real search (Ray Tune + MLflow) with its loss, and checks that the loss's
searched hyperparameters are params of every nested MLflow trial run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.cli import main
from kdforge.config import SearchConfig
from kdforge.plugin_host.manager import get_registry
from tests._plugin_install import installed_packages
from tests.conftest import tiny_search_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "kdforge-example-loss"
HPARAMS = {"loss.beta": (0.1, 10.0), "loss.gamma": (0.1, 10.0), "loss.temperature": (1.0, 8.0)}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory: pytest.TempPathFactory):
    with installed_packages([EXAMPLE], tmp_path_factory.mktemp("example")) as dists:
        yield dists


def test_example_plugin_is_discovered_and_inspectable(example_installed, capsys) -> None:
    record = get_registry().get("loss", "dist_kd")
    assert record.source == "kdforge-example-loss" and record.version == "0.1.0"
    assert record.entry_point == "dist_kd = kdforge_example_loss"
    assert main(["plugins", "show", "dist_kd"]) == 0
    shown = capsys.readouterr().out
    assert "source:      kdforge-example-loss 0.1.0" in shown
    assert "ce_weight: float = 1.0; >= 0" in shown
    for name, (low, high) in HPARAMS.items():
        assert f"{name}: float [{low:g}, {high:g}] log" in shown
    # Its own tests (the loss contract) run in tests/core/test_scaffold.py's subprocess.


def test_search_with_example_loss_logs_its_hyperparameters(
    example_installed, ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from kdforge.search.driver import run_search

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "loss": {"name": "dist_kd", "params": {"ce_weight": 0.5}},
            "search.epochs": 3,
            "search.grace_period": 1,
            "baseline.enabled": False,
            "export.enabled": False,
        },
    )
    result = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    assert result.best is not None

    client = MlflowClient(raw["tracking"]["uri"])
    experiment = client.get_experiment_by_name("kdforge")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`kdforge.role` = 'trial'"
    )
    assert len(runs) == 3
    sampled = set()
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        for name, (low, high) in HPARAMS.items():
            value = float(run.data.params[name])
            assert low <= value <= high, (name, value)
        sampled.add(run.data.params["loss.beta"])
        assert "train_loss" in run.data.metrics
    assert len(sampled) == 3, "beta must be sampled per trial, not fixed"
