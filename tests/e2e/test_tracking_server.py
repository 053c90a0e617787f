"""A search against a real ``mlflow server``, and what a team then finds in MLflow.

The server runs as a subprocess (SQLite backend, local artifact folder served through
the server, 127.0.0.1, a free port) and is stopped after the module. One small search
runs against it; then its ``best_config.yaml`` runs again, unchanged, through the
CLI, and offers its student to ``@champion`` under ``export.promote: if_better``.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kdforge.config import SearchConfig
from kdforge.search.driver import SearchResult, run_search
from tests._mlflow_server import start_server, stop_server
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow

MODEL = "tiny-server-student"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1:<free port>; yields its URL once /health answers."""
    import mlflow

    folder = tmp_path_factory.mktemp("mlflow-server")
    process, url = start_server(folder)
    port = int(url.rsplit(":", 1)[1])
    try:
        yield url
    finally:
        stop_server(process)
        mlflow.set_tracking_uri(None)
    with socket.socket() as sock:  # the server is gone
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def searches(
    ray_session, mlflow_server: str, digits_teacher_path: Path, tmp_path_factory
) -> tuple[SearchResult, Path]:
    """The search, then its best_config.yaml run as is: ``(first result, second dir)``."""
    from kdforge.cli import main

    tmp_path = tmp_path_factory.mktemp("server-search")
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": 2,
            "search.epochs": 3,
            "tracking.uri": mlflow_server,
            "export.registered_model_name": MODEL,
            "export.promote": "if_better",
        },
    )
    first = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    assert main(["search", str(first.search_dir / "best_config.yaml")]) == 0
    second = [d for d in first.search_dir.parent.iterdir() if d != first.search_dir]
    assert len(second) == 1
    return first, second[0]


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(url)


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_parent_run_tags_dataset_input_and_artifacts(searches, mlflow_server: str) -> None:
    import kdforge

    first, _ = searches
    client = _client(mlflow_server)
    run = client.get_run(first.parent_run_id)
    tags = run.data.tags
    assert tags["kdforge.version"] == kdforge.__version__
    assert tags["kdforge.teacher"] == "checkpoint" and tags["kdforge.dataset"] == "digits"
    assert tags["kdforge.search_space"] == "mlp" and tags["kdforge.loss"] == "hinton_kd"
    assert json.loads(tags["kdforge.losses"])["name"] == "hinton_kd"
    contexts = {
        t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"
    }
    assert contexts == {"train", "validation", "test"}
    artifacts = _artifacts(client, first.parent_run_id)
    for name in (
        "leaderboard.csv",
        "plots/accuracy_vs_size.png",
        "plots/optimization_history.png",
        "best_config.yaml",
        "student.onnx",
        "report.md",
        "report.html",
        "summary.json",
    ):
        assert name in artifacts, f"{name} missing from {sorted(artifacts)}"
    assert {"pareto.png", "plots/pareto.png"} & artifacts
    report = Path(client.download_artifacts(first.parent_run_id, "report.md")).read_text()
    assert "## Leaderboard" in report and "@champion -> version 1" in report


def test_nested_runs_carry_status_reason_and_costs(searches, mlflow_server: str) -> None:
    first, _ = searches
    client = _client(mlflow_server)
    parent = client.get_run(first.parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{first.parent_run_id}'"
    )
    assert len(children) == 2
    for child in children:
        tags = child.data.tags
        assert tags["kdforge.status"] in {"finished", "stopped"}
        expected = (
            "trained all 3 epochs" if tags["kdforge.status"] == "finished" else "stopped early"
        )
        assert tags["kdforge.status_reason"].startswith(expected)
        assert child.data.metrics["params"] > 0 and "macs" in child.data.metrics
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert steps == list(range(1, len(steps) + 1))


@pytest.mark.usefixtures("searches")
def test_champion_loads_through_mlflow_and_onnxruntime_alike(mlflow_server: str) -> None:
    import mlflow
    import onnxruntime as ort
    from mlflow.models import get_model_info

    from kdforge.plugins.datasets.digits import Digits

    uri = f"models:/{MODEL}@champion"
    mlflow.set_tracking_uri(mlflow_server)
    info = get_model_info(uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    x = Digits().load(0).test.x[:64].numpy()
    out = mlflow.pyfunc.load_model(uri).predict(x)
    through_mlflow = np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
        session = ort.InferenceSession(
            str(next(local.rglob("*.onnx"))), providers=["CPUExecutionProvider"]
        )
        through_ort = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert through_mlflow.shape == (64, 10)
    np.testing.assert_allclose(through_mlflow, through_ort, rtol=1e-5, atol=1e-5)


def test_registered_version_has_a_description(searches, mlflow_server: str) -> None:
    first, _ = searches
    client = _client(mlflow_server)
    version = client.get_model_version(MODEL, "1")
    text = version.description
    for part in ("teacher", "test accuracy", "compression", "speed-up", "distillation gain"):
        assert part in text, f"{part!r} missing from the description:\n{text}"
    assert f"{first.summary['student_params']:,}" in text
    assert client.get_registered_model(MODEL).description.startswith("@champion: version")


def test_best_config_reruns_the_student_and_if_better_decides(searches, mlflow_server) -> None:
    first, second_dir = searches
    summary = json.loads((second_dir / "summary.json").read_text())
    assert summary["num_trials"] == 1
    for key in ("best_arch", "best_loss_hparams", "best_lr"):
        assert summary[key] == first.summary[key]
    promotion = summary["promotion"]
    assert promotion["policy"] == "if_better"
    assert (promotion["candidate_version"], promotion["previous_version"]) == ("2", "1")
    new, old = promotion["candidate_test_acc"], promotion["previous_test_acc"]
    assert promotion["promoted"] == (new > old)
    champion = _client(mlflow_server).get_model_version_by_alias(MODEL, "champion")
    assert champion.version == promotion["champion_version"] == ("2" if new > old else "1")
    report = (second_dir / "report.md").read_text()
    assert f"@champion -> version {champion.version}" in report
    assert "v2" in report and "v1" in report  # both accuracies are quoted


def test_cli_report_of_the_server_search(searches, capsys) -> None:
    from kdforge.cli import main

    first, _ = searches
    capsys.readouterr()
    assert main(["report", str(first.search_dir)]) == 0
    out = capsys.readouterr().out
    assert "compression:" in out and "speed-up:" in out
    assert (first.search_dir / "report.html").read_text().count("data:image/png;base64,") == 3
