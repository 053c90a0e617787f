"""End to end: regression and multilabel searches through real Ray, MLflow and ONNX.

Each module fixture writes a small table (a known function of the features), trains a
teacher on it with ``train_teacher`` and runs a 2-trial search on the same rows. The
tests then read every place a user looks: the leaderboard, ``summary.json``, MLflow's
runs and registry, the exported ONNX model, ``load_student`` and ``kdforge serve``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kdforge import load_student
from kdforge.cli import main
from kdforge.config import SearchConfig, TeacherConfig
from kdforge.search.driver import run_search
from kdforge.teacher.train_teacher import train_teacher
from tests.deploy.conftest import free_port, kdforge_cli, post, start_server, stop_server

pytestmark = pytest.mark.slow

ROWS = 600


def _table(path: Path, kind: str) -> None:
    """Features x0..x3 and either two real targets or three 0/1 labels, some unknown."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 4))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if kind == "regression":
            price = 500 + 120 * x[:, 0] - 80 * x[:, 1] ** 2 + rng.normal(0, 5, ROWS)
            rent = 40 * np.sin(x[:, 2]) + 30 * x[:, 3] + rng.normal(0, 2, ROWS)
            writer.writerow(["x0", "x1", "x2", "x3", "price", "rent"])
            for i in range(ROWS):
                cells = [*x[i].round(4), round(price[i], 2), round(rent[i], 2)]
                if i % 17 == 0:
                    cells[5] = ""  # an unknown rent: the row still teaches its price
                writer.writerow(cells)
        else:
            labels = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0.5, x[:, 3] < -0.5], axis=1)
            writer.writerow(["x0", "x1", "x2", "x3", "hot", "leak", "worn"])
            for i in range(ROWS):
                writer.writerow([*x[i].round(4), *labels[i].astype(int)])


def _search(tmp_path: Path, kind: str, **extra: Any):
    table = tmp_path / f"{kind}.csv"
    _table(table, kind)
    columns = (
        {"targets": ["price", "rent"]}
        if kind == "regression"
        else {"labels": ["hot", "leak", "worn"]}
    )
    dataset = {"name": "tabular", "params": {"path": str(table), **columns}}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train_teacher(
        TeacherConfig.model_validate(
            {
                "name": f"{kind}-teacher",
                "dataset": dataset,
                "architecture": {
                    "name": "mlp",
                    "params": {"depth": 2, "width_0": 128, "width_1": 64, "dropout": 0.0},
                },
                "training": {"epochs": 25},
                "output": str(tmp_path / "teacher.pt"),
                "tracking": {"uri": uri},
            }
        ),
        emit=lambda _: None,
    )
    raw = {
        "name": kind,
        "output_dir": str(tmp_path / "runs"),
        "dataset": dataset,
        "teacher": {"name": "checkpoint", "params": {"path": str(tmp_path / "teacher.pt")}},
        "student": {"name": "mlp", "params": {"max_depth": 2, "max_width": 32}},
        "search": {"num_trials": 2, "epochs": 4, "grace_period": 2},
        "baseline": {"seeds": 1},
        "tracking": {"uri": uri},
        "export": {"registered_model_name": f"{kind}-student"},
        **extra,
    }
    lines: list[str] = []
    result = run_search(SearchConfig.model_validate(raw), emit=lines.append)
    return result, raw, lines, uri


@pytest.fixture(scope="module")
def regression(ray_session, tmp_path_factory: pytest.TempPathFactory):
    return _search(tmp_path_factory.mktemp("regression"), "regression")


@pytest.fixture(scope="module")
def multilabel(ray_session, tmp_path_factory: pytest.TempPathFactory):
    return _search(tmp_path_factory.mktemp("multilabel"), "multilabel")


def _test_rows(raw: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate

    splits = instantiate("dataset", PluginRef.model_validate(raw["dataset"]), "dataset").load(0)
    return splits.test.x.numpy(), splits.test.y.numpy()


def _onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_regression_files_and_lines_name_the_task_metric(regression) -> None:
    result, _, lines, _ = regression
    header = (result.search_dir / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "val_r2" in header and "test_r2" in header and "val_acc" not in header
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["metric"] == "r2" and summary["metric_higher_is_better"] is True
    assert not any(key.endswith("_acc") for key in summary)
    assert summary["student_test_r2"] > 0.5 and summary["teacher_test_r2"] > 0.8
    assert summary["distillation_gain"] == pytest.approx(
        summary["distilled_test_r2_mean"] - summary["scratch_test_r2_mean"]
    )
    printed = "\n".join(lines)
    assert "teacher: test_r2=" in printed and "val_r2=" in printed
    assert "test_acc" not in printed and "val_acc" not in printed


def test_regression_runs_and_registry_in_mlflow(regression) -> None:
    from mlflow.tracking import MlflowClient

    result, raw, _, uri = regression
    client = MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert "student_test_r2" in parent.data.metrics
    assert "student_test_acc" not in parent.data.metrics
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    assert len(children) == raw["search"]["num_trials"]
    for child in children:
        assert client.get_metric_history(child.info.run_id, "val_r2")
        assert "loss.alpha" in child.data.params  # regression_kd: the task's default loss
    version = client.get_model_version_by_alias("regression-student", "champion")
    assert float(version.tags["student_test_r2"]) == pytest.approx(
        json.loads((result.search_dir / "summary.json").read_text())["student_test_r2"], abs=1e-4
    )


def test_regression_student_predicts_in_the_data_units(regression) -> None:
    result, raw, _, _ = regression
    x, y = _test_rows(raw)
    summary = json.loads((result.search_dir / "summary.json").read_text())
    exported = _onnx(summary["export_path"], x)
    # The ONNX model ends with the task's head: prices, not standard deviations.
    known = ~np.isnan(y)
    assert (
        np.abs(exported[known] - y[known]).mean() < 0.5 * np.abs(y[known] - y[known].mean()).mean()
    )
    r2 = [
        1 - ((exported[k, c] - y[k, c]) ** 2).sum() / ((y[k, c] - y[k, c].mean()) ** 2).sum()
        for c in range(2)
        for k in [known[:, c]]
    ]
    assert float(np.mean(r2)) == pytest.approx(summary["student_test_r2"], abs=1e-3)
    student = load_student(result.search_dir)
    with torch.no_grad():
        rebuilt = student(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rebuilt, exported, rtol=1e-4, atol=1e-3)


def test_regression_served_over_http_in_the_data_units(regression, server_process) -> None:
    result, raw, _, _ = regression
    x, _ = _test_rows(raw)
    port = free_port()
    argv = kdforge_cli("serve", str(result.search_dir), "--port", str(port))
    server_process.append(start_server(argv, f"http://127.0.0.1:{port}/ping"))
    status, answer = post(
        f"http://127.0.0.1:{port}/invocations", json.dumps({"inputs": x[:5].tolist()})
    )
    assert status == 200, answer
    served = np.asarray(answer["predictions"]["values"], dtype=np.float32)  # not "logits"
    summary = json.loads((result.search_dir / "summary.json").read_text())
    np.testing.assert_allclose(served, _onnx(summary["export_path"], x[:5]), rtol=1e-5)
    stop_server(server_process.pop())


def test_multilabel_search_selects_by_map_and_exports_label_logits(multilabel) -> None:
    from mlflow.tracking import MlflowClient

    result, raw, lines, uri = multilabel
    header = (result.search_dir / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "val_map" in header and "test_map" in header
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["metric"] == "map" and 0.5 < summary["student_test_map"] <= 1.0
    assert "teacher: test_map=" in "\n".join(lines)
    children = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_run(result.parent_run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    assert all("loss.temperature" in c.data.params for c in children)  # multilabel_kd
    x, y = _test_rows(raw)
    logits = _onnx(summary["export_path"], x)
    assert logits.shape == y.shape
    assert ((logits > 0) == (y > 0.5)).mean() > 0.75  # a label is present where its logit > 0
    with torch.no_grad():
        rebuilt = load_student(result.search_dir)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rebuilt, logits, rtol=1e-4, atol=1e-4)


@pytest.fixture
def server_process():
    started: list = []
    yield started
    for process in started:
        stop_server(process)


def test_a_loss_that_cannot_read_the_task_is_one_line_before_ray(tmp_path: Path, capsys) -> None:
    import yaml

    table = tmp_path / "r.csv"
    _table(table, "regression")
    config = {
        "name": "bad",
        "output_dir": str(tmp_path / "runs"),
        "dataset": {"name": "tabular", "params": {"path": str(table), "targets": ["price"]}},
        "teacher": {"name": "checkpoint", "params": {"path": str(tmp_path / "none.pt")}},
        "student": {"name": "mlp"},
        "loss": {"name": "dkd"},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert "loss 'dkd' does not fit task 'regression'" in err and "regression_kd" in err
    assert "Traceback" not in err
    config.pop("loss")
    config["objectives"] = [{"name": "val_acc"}, {"name": "params"}]
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 2
    assert "objectives: val_acc is not a metric task 'regression' selects by" in (
        capsys.readouterr().err
    )


def test_regression_quantization_is_gated_on_r2(regression) -> None:
    from kdforge.config.quantize_settings import QuantizeSettings
    from kdforge.export.quantize import quantize_search_dir

    result, _, _, _ = regression
    summary = json.loads((result.search_dir / "summary.json").read_text())
    report = quantize_search_dir(
        result.search_dir,
        QuantizeSettings(mode="dynamic", max_accuracy_drop=0.05),
        register=False,
        emit=lambda _: None,
    )
    # The float model is scored by the task's metric, as the search scored it.
    assert report["float"]["test_acc"] == pytest.approx(summary["student_test_r2"], abs=1e-3)
    assert report["accuracy_drop"] == pytest.approx(
        report["float"]["test_acc"] - report["int8"]["test_acc"]
    )
    assert report["accepted"] is (report["accuracy_drop"] <= 0.05 + 1e-9)


def test_regression_promotion_if_better_compares_r2(regression) -> None:
    import mlflow

    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate
    from kdforge.tracking.promote import promote_version
    from kdforge.tracking.registry import register_onnx

    result, raw, _, uri = regression
    summary = json.loads((result.search_dir / "summary.json").read_text())
    x, _ = _test_rows(raw)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        again = register_onnx(summary["export_path"], name="regression-student", example=x[:4])
    splits = instantiate("dataset", PluginRef.model_validate(raw["dataset"]), "dataset").load(0)
    task = instantiate("task", PluginRef(name="regression"), "task")
    test = task.prepare(splits).test
    promotion = promote_version(
        "regression-student", again, policy="if_better", test=test, task=task
    )
    # The same model scores the same R² in the data's units: no strict gain, no move.
    assert not promotion.promoted
    assert promotion.candidate_test_acc == pytest.approx(summary["student_test_r2"], abs=1e-3)
    assert "test r2" in promotion.reason and " = " in promotion.reason


def test_report_of_a_regression_folder_names_r2(regression, capsys) -> None:
    result, _, _, _ = regression
    assert main(["report", str(result.search_dir)]) == 0
    printed = capsys.readouterr().out
    assert "test_r2" in printed and "val_r2" in printed and "test_acc" not in printed


def test_distill_in_memory_regression_from_python(ray_session, tmp_path: Path) -> None:
    import kdforge

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=generator)
    teacher = torch.nn.Linear(3, 2)  # the function that made the targets: a perfect teacher
    with torch.no_grad():
        y = teacher(x) * 50 + 100  # targets far from standard units
        teacher.weight.mul_(50)
        teacher.bias.mul_(50).add_(100)
    result = kdforge.distill(
        teacher,
        (x, y),
        task="regression",
        student="mlp",
        search={"num_trials": 1, "epochs": 6},
        baseline={"enabled": False},
        export={"enabled": False},
        output_dir=str(tmp_path / "runs"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        progress=False,
    )
    assert result.metric.name == "r2" and result.metric.higher_is_better
    assert result.teacher_metrics["test_r2"] == pytest.approx(1.0, abs=1e-4)
    assert result.student_metrics["test_r2"] > 0.5
    assert "student test r2" in result._repr_html_()
