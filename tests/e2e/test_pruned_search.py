"""End to end: a search over students pruned from the teacher, through real Ray and MLflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kdforge import build_checkpoint_model, load_checkpoint
from kdforge.config import SearchConfig
from kdforge.search.driver import run_search
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow


def test_pruned_search_registers_a_champion_that_reruns(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    import mlflow
    import onnxruntime as ort
    from mlflow.tracking import MlflowClient

    from kdforge.plugins.datasets.digits import Digits

    teacher = build_checkpoint_model(load_checkpoint(digits_teacher_path))
    teacher_params = sum(p.numel() for p in teacher.parameters())
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "student": {"name": "pruned", "params": {"min_ratio": 0.3, "max_ratio": 0.9}},
            "search.num_trials": 2,
            "search.epochs": 2,
            "search.grace_period": 1,
            # Checked on the pruned graph before training: the ratio-0.3 cut is over it.
            "constraints.max_params": teacher_params // 2,
            "quantize": {"mode": "dynamic", "max_accuracy_drop": 1.0, "latency_runs": 10},
        },
    )
    config = SearchConfig.model_validate(raw)
    result = run_search(config, emit=lambda _: None)
    assert result.best is not None and result.best.status == "finished"
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["student_params"] <= teacher_params // 2

    student = build_checkpoint_model(load_checkpoint(result.search_dir / "student.pt"))
    assert sum(p.numel() for p in student.parameters()) == summary["student_params"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    version = MlflowClient(uri).get_model_version_by_alias(config.registered_model_name, "champion")
    assert float(version.tags["compression_ratio"]) >= 2
    x = Digits().load(config.seed).test.x[:16].numpy()
    with torch.no_grad():
        expected = student(torch.from_numpy(x)).numpy()
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{config.registered_model_name}@champion", dst_path=str(tmp_path / "dl")
        )
    )
    session = ort.InferenceSession(
        str(next(local.rglob("*.onnx"))), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert list(result.search_dir.rglob("*int8*.onnx")), "the pruned student was not quantized"

    # The long teacher recipe rebuilds the student but is shown only as a short digest.
    recipe = result.best.arch["_teacher_recipe"]
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    board = (result.search_dir / "leaderboard.csv").read_text()
    assert recipe not in board and '""space""' not in board
    assert "student.teacher_recipe_digest" in board and digest in board
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    trials = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`kdforge.role` = 'trial'"
    )
    assert trials
    for run in trials:
        params = run.data.params
        assert params["student.teacher_recipe_digest"] == digest
        assert not any("teacher_recipe" in k and "digest" not in k for k in params)
        assert all(len(v) < 100 for v in params.values()), params

    # best_config.yaml re-runs the same cut: the same architecture and parameter count.
    best = yaml.safe_load((result.search_dir / "best_config.yaml").read_text())
    assert best["student"]["name"] == "pruned" and "_teacher_recipe" in best["student"]["fixed"]
    again = SearchConfig.model_validate({**best, "output_dir": str(tmp_path / "again")})
    rerun = run_search(again, emit=lambda _: None)
    assert rerun.best is not None
    assert rerun.best.arch == result.best.arch
    assert rerun.best.params == result.best.params


def test_one_search_chooses_between_a_pruned_teacher_and_a_fresh_student(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "student": [
                {"name": "pruned", "params": {"min_ratio": 0.5, "max_dropped_blocks": 0}},
                {"name": "mlp", "params": {"max_depth": 1, "max_width": 16}},
            ],
            "search.num_trials": 4,
            "search.epochs": 2,
            "search.grace_period": 1,
            "search.sampler": "random",
            "seed": 1,
            "baseline.seeds": 1,
            "export.enabled": False,
        },
    )
    config = SearchConfig.model_validate(raw)
    assert config.student.name == "choice"
    result = run_search(config, emit=lambda _: None)
    chosen = {row.arch["space"] for row in result.rows}
    assert chosen == {"pruned", "mlp"}, chosen  # the seed-1 sampler draws both families
    for row in result.rows:
        family = row.arch["space"]
        assert all(
            k.startswith(f"{family}.") for k in row.arch if k not in ("space", "space_params")
        )
    student = build_checkpoint_model(load_checkpoint(result.search_dir / "student.pt"))
    assert sum(p.numel() for p in student.parameters()) == result.best.params
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.params.get("student.space") for r in runs} >= {"pruned", "mlp"}
