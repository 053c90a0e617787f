"""Multi-device trials: a search whose every trial trains on 2 data-parallel workers (gloo).

Through real Ray Tune on the shared 2-CPU Ray: each worker reserves half a CPU, so two
2-worker trials run at once. ASHA (grace period 1) stops some trials, the champion is
exported to ONNX and registered as in a single-process search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdforge import build_checkpoint_model, load_checkpoint
from kdforge.config import SearchConfig
from kdforge.search.driver import run_search
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(scope="module")
def parallel_search(
    ray_session, digits_teacher_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    assert ray_session.cluster_resources().get("CPU", 0) >= 1  # one 2-worker trial at least
    tmp_path = tmp_path_factory.mktemp("multi-worker")
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": 4,
            "search.epochs": EPOCHS,
            "search.grace_period": 1,
            "search.reduction_factor": 2,
            "search.workers_per_trial": 2,
            "search.cpus_per_trial": 0.5,
            "baseline.enabled": False,
        },
    )
    config = SearchConfig.model_validate(raw)
    lines: list[str] = []
    result = run_search(config, emit=lines.append)
    return result, config, tmp_path, lines


def _trial_histories(tmp_path: Path, parent_run_id: str) -> list[dict[str, list[float]]]:
    """Each trial run's per-epoch metrics, as the driver logged them from Tune's results."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
    )
    names = ("epoch_val_acc", "train_rows_worker_0", "train_rows_worker_1")
    return [
        {
            name: [
                m.value
                for m in sorted(
                    client.get_metric_history(run.info.run_id, name), key=lambda m: m.step
                )
            ]
            for name in names
        }
        for run in runs
    ]


def test_every_trial_trains_on_both_workers_and_reports_each_epoch(parallel_search) -> None:
    result, config, tmp_path, lines = parallel_search
    assert "2 at a time" in "\n".join(lines)  # 2 CPUs / (2 workers x 0.5 CPU)
    histories = _trial_histories(tmp_path, result.parent_run_id)
    assert len(histories) == config.search.num_trials
    for history in histories:
        epochs = len(history["epoch_val_acc"])
        assert epochs >= 1  # Tune got one result per epoch, as from a one-process trial
        rows = list(
            zip(history["train_rows_worker_0"], history["train_rows_worker_1"], strict=True)
        )
        assert len(rows) == epochs
        for first, second in rows:
            # Each worker trained on its half of every batch: together, every row once.
            assert first > 0 and second > 0 and abs(first - second) <= 1
            assert first + second == rows[0][0] + rows[0][1]


def test_asha_stops_multi_worker_trials(parallel_search) -> None:
    result, *_ = parallel_search
    statuses = sorted(row.status for row in result.rows)
    assert "stopped" in statuses and "finished" in statuses, statuses
    stopped = [row for row in result.rows if row.status == "stopped"]
    assert all(row.epochs < EPOCHS for row in stopped)


def test_champion_of_multi_worker_trials_exports_to_onnx(parallel_search) -> None:
    import mlflow
    import onnxruntime as ort

    from kdforge.plugins.datasets.digits import Digits

    result, config, tmp_path, _ = parallel_search
    assert result.best is not None and result.best.status == "finished"
    x = Digits().load(config.seed).test.x[:32].numpy()
    student = build_checkpoint_model(load_checkpoint(result.search_dir / "student.pt"))
    with torch.no_grad():
        expected = student(torch.from_numpy(x)).numpy()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model_uri = f"models:/{config.registered_model_name}@champion"
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "dl")))
    session = ort.InferenceSession(
        str(next(local.rglob("*.onnx"))), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_fsdp_trial_reports_and_keeps_full_best_weights(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    """FSDP through Tune: followers join the test pass and the gather of the weights."""
    from kdforge.plugins.datasets.digits import Digits
    from kdforge.training.evaluate import evaluate

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": 1,
            "search.epochs": 2,
            "search.grace_period": 2,
            "search.workers_per_trial": 2,
            "search.cpus_per_trial": 0.5,
            "search.parallel": "fsdp",
            "baseline.enabled": False,
            "export.enabled": False,
        },
    )
    config = SearchConfig.model_validate(raw)
    result = run_search(config, emit=lambda _: None)
    (row,) = result.rows
    assert row.status == "finished" and row.epochs == 2 and row.checkpoint
    # The student kept is whole (gathered from the shards) and is the one whose test
    # accuracy rank 0 reported for the best validation epoch.
    student = build_checkpoint_model(load_checkpoint(result.search_dir / "student.pt"))
    test = Digits().load(config.seed).test
    accuracy, _ = evaluate(student, test.x, test.y)
    assert accuracy == pytest.approx(row.test_acc)
