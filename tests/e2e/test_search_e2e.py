"""End to end: a 3-trial search through real Ray and a real MLflow SQLite store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from kdforge import build_checkpoint_model, load_checkpoint
from kdforge.config import SearchConfig
from kdforge.search.driver import run_search
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_search(
    ray_session, digits_teacher_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    tmp_path = tmp_path_factory.mktemp("e2e")
    config = SearchConfig.model_validate(tiny_search_config(digits_teacher_path, tmp_path))
    lines: list[str] = []
    result = run_search(config, emit=lines.append)
    return result, config, tmp_path, lines


def test_search_writes_leaderboard_and_summary(finished_search) -> None:
    result, config, _, lines = finished_search
    assert len(result.rows) == config.search.num_trials
    assert result.best is not None and result.best.status == "finished"
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["student_params"] < summary["teacher_params"]
    assert summary["compression_ratio"] == pytest.approx(
        summary["teacher_params"] / summary["student_params"]
    )
    assert 0.0 <= summary["student_test_acc"] <= 1.0
    assert len(summary["scratch_test_acc_runs"]) == config.baseline.seeds
    # Teacher outputs are computed once: one forward per 512-row batch of each split.
    assert summary["teacher_forward_calls"] == 3 + 1 + 1
    assert summary["distillation_gain"] == pytest.approx(
        summary["distilled_test_acc_mean"] - summary["scratch_test_acc_mean"]
    )
    assert (result.search_dir / "leaderboard.csv").read_text().count("\n") == 1 + len(result.rows)
    printed = "\n".join(lines)
    assert "teacher: test_acc=" in printed and "compression:" in printed
    assert "distillation gain" in printed


def test_mlflow_parent_and_nested_runs(finished_search) -> None:
    from mlflow.tracking import MlflowClient

    result, config, tmp_path, _ = finished_search
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.info.run_id == result.parent_run_id]
    assert parent and parent[0].data.params["search.num_trials"] == "3"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(children) == config.search.num_trials
    for child in children:
        assert "lr" in child.data.params and "loss.temperature" in child.data.params
        assert "student.depth" in child.data.params
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert len(history) >= 1 and [m.step for m in history] == sorted(m.step for m in history)
        assert child.data.tags["kdforge.status"] in {"finished", "stopped"}


def test_champion_onnx_matches_pytorch_student(finished_search) -> None:
    import mlflow
    import onnxruntime as ort
    from mlflow.tracking import MlflowClient

    from kdforge.plugins.datasets.digits import Digits

    result, config, tmp_path, _ = finished_search
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias(config.registered_model_name, "champion")
    assert float(version.tags["compression_ratio"]) > 1
    assert "teacher_test_acc" in version.tags and "student_test_acc" in version.tags

    x = Digits().load(config.seed).test.x[:32].numpy()
    student = build_checkpoint_model(load_checkpoint(result.search_dir / "student.pt"))
    with torch.no_grad():
        expected = student(torch.from_numpy(x)).numpy()

    model_uri = f"models:/{config.registered_model_name}@champion"
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "dl")))
    onnx_file = next(local.rglob("*.onnx"))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)

    pyfunc = mlflow.pyfunc.load_model(model_uri)
    out = pyfunc.predict(x)
    got_pyfunc = out["logits"] if isinstance(out, dict) else np.asarray(out)
    np.testing.assert_allclose(got_pyfunc, expected, atol=1e-4)


def test_output_names_trials_alike_and_reads_as_english(finished_search) -> None:
    """Progress lines, leaderboard, result block and MLflow runs say ``trial 013`` alike."""
    from mlflow.tracking import MlflowClient

    result, config, tmp_path, lines = finished_search
    printed = "\n".join(lines)
    numbers = {f"{row.number:03d}" for row in result.rows}
    progress = re.findall(r"^\[\s*\d+/3\] trial (\S+) ", printed, flags=re.M)
    assert sorted(progress) == sorted(numbers)  # creation numbers, not Ray's hex ids
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    children = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id
    ]
    assert {r.info.run_name for r in children} == {f"trial {n}" for n in numbers}
    # The leaderboard has an arch column: the space's own short description.
    header = next(line for line in lines if re.match(r"\s*trial\s+status\s+arch\s", line))
    assert header
    for row in result.rows:
        assert re.fullmatch(r"mlp \d+x\[\d+(,\d+)*\]", row.arch_text), row.arch_text
        assert row.arch_text in printed
    best = result.best
    assert best is not None
    assert f"(trial {best.number:03d}, {best.arch_text})" in printed  # the result block
    # One seed is "1 seed", and the baseline's shared learning rate is stated.
    assert "with 1 seed, distilled" in printed and "1 seeds" not in printed
    assert "from scratch with the chosen trial's lr" in printed
    assert "searching 3 students" in printed
    # One objective: no Pareto table.
    assert "Pareto front" not in printed
    # The speed-up comes with its spread.
    assert re.search(r"speed-up: \d+\.\dx \(\d+\.\d-\d+\.\d, 15 repeats\)", printed)
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["speedup_low"] <= summary["speedup"] <= summary["speedup_high"]
    report = (result.search_dir / "report.md").read_text()
    assert "from scratch with the chosen trial's lr" in report and "| arch |" in report
