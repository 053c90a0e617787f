"""Failed trials are marked with their reason and the search goes on; a budget stops it."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

from kdforge.config import SearchConfig
from kdforge.errors import SearchError
from kdforge.interfaces import HParam, LossResult, LossStrategy, ModelOutput
from kdforge.plugin_host.manager import PluginRecord, get_registry
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.search.driver import run_search
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow


class PoisonLoss(LossStrategy):
    """Hinton KD that turns NaN (poison in (0.5, 0.8]) or raises (poison > 0.8)."""

    name = "poison_test"
    hyperparameters = (HParam("poison", 0.0, 1.0, default=0.0),)

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        poison = self.hparams["poison"]
        if poison > 0.8:
            raise RuntimeError(f"plugin exploded (poison={poison:.2f})")
        result = HintonKD(hparams={"temperature": 2.0, "alpha": 0.5})(student, teacher, labels)
        if poison > 0.5:
            return LossResult(result.total * float("nan"), result.parts)
        return result


@pytest.fixture
def poison_loss(ray_session):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    registry = get_registry()
    registry.add(PluginRecord("loss", "poison_test", PoisonLoss, "tests", "0"))
    yield
    registry.records["loss"].pop("poison_test", None)
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_failed_trials_are_reported_and_the_search_goes_on(
    poison_loss, digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "loss.name": "poison_test",
            "search.num_trials": 6,
            "search.max_failures": 6,
            "search.sampler": "random",
            "seed": 3,
        },
    )
    result = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    by_status: dict[str, list] = {}
    for row in result.rows:
        by_status.setdefault(row.status, []).append(row)
    assert by_status.get("failed") and (by_status.get("finished") or by_status.get("stopped"))
    for row in result.rows:
        poison = row.loss_hparams["poison"]
        if poison > 0.8:
            assert row.status == "failed" and "plugin exploded" in row.error
        elif poison > 0.5:
            assert row.status == "failed" and "training loss became nan" in row.error
        else:
            assert row.status in {"finished", "stopped"}
    assert result.best is not None and result.best.loss_hparams["poison"] <= 0.5

    with open(result.search_dir / "leaderboard.csv") as handle:
        table = list(csv.DictReader(handle))
    assert sum(r["status"] == "failed" for r in table) == len(by_status["failed"])
    client = MlflowClient(raw["tracking"]["uri"])
    failed_runs = client.search_runs(
        [client.get_experiment_by_name("kdforge").experiment_id],
        filter_string="tags.`kdforge.status` = 'failed'",
    )
    assert len(failed_runs) == len(by_status["failed"])
    for run in failed_runs:
        assert run.info.status == "FAILED"
        assert (
            "exploded" in run.data.tags["kdforge.error"] or "nan" in run.data.tags["kdforge.error"]
        )


def test_failure_budget_stops_a_search_that_fails_everywhere(
    poison_loss, digits_teacher_path: Path, tmp_path: Path
) -> None:
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "loss.name": "poison_test",
            "loss.hparams": {"poison": 0.9},
            "search.num_trials": 8,
            "search.max_failures": 2,
            "search.max_concurrent": 1,
        },
    )
    with pytest.raises(SearchError, match=r"stopped the search: 2 trials failed .*plugin exploded"):
        run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    (search_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    with open(search_dir / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert 2 <= len(rows) < 8 and sum(r["status"] == "failed" for r in rows) >= 2
