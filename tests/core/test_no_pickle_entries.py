"""No pickled code runs from any entry unless the user opts in (issue 20, item 1).

Each entry is given a hostile pickle whose unpickling writes a marker file: the
``mlflow`` teacher (a ``runs:/`` and a ``models:/`` URI), an ensemble holding it,
and ``kdforge serve`` (a real CLI subprocess). The marker must not appear; each
refusal names its opt-in switch, and the switch lets the payload through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdforge.config import PluginRef
from kdforge.errors import CheckpointError
from kdforge.plugin_host.resolve import instantiate
from tests._hostile import log_hostile_pytorch_model


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("hostile")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    marker = folder / "PWNED"
    run_uri = log_hostile_pytorch_model(uri, marker, folder, "evil-teacher")
    assert not marker.exists()
    return {"tracking_uri": uri, "marker": marker, "run_uri": run_uri, "folder": folder}


def _teacher(ref: dict):
    teacher = instantiate("teacher", PluginRef.model_validate(ref), "teacher")
    teacher.load()
    return teacher


@pytest.mark.parametrize("which", ["run_uri", "models:/evil-teacher/1"])
def test_mlflow_teacher_refuses_a_pickled_pytorch_model(hostile, which, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    uri = hostile.get(which, which)
    params = {"uri": uri, "tracking_uri": hostile["tracking_uri"]}
    with pytest.raises(CheckpointError, match="pickled") as info:
        _teacher({"name": "mlflow", "params": params})
    assert "teacher.params.trust_pickle: true" in str(info.value.hint)
    assert not hostile["marker"].exists()
    # MLflow's own switch set to true in the environment does not open kdforge's door.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    with pytest.raises(CheckpointError, match="pickled"):
        _teacher({"name": "mlflow", "params": {**params, "flavor": "pytorch"}})
    assert not hostile["marker"].exists()


def test_an_ensemble_member_is_refused_the_same_way(hostile) -> None:
    member = {
        "name": "mlflow",
        "params": {"uri": hostile["run_uri"], "tracking_uri": hostile["tracking_uri"]},
    }
    with pytest.raises(CheckpointError, match="pickled"):
        _teacher({"name": "ensemble", "params": {"members": [member, member]}})
    assert not hostile["marker"].exists()


def test_trust_pickle_is_the_opt_in(hostile, tmp_path) -> None:
    params = {
        "uri": hostile["run_uri"],
        "tracking_uri": hostile["tracking_uri"],
        "trust_pickle": True,
    }
    # The payload runs (it is no model, so loading then fails one way or another).
    with (
        pytest.warns(UserWarning, match="trust_pickle is true"),
        pytest.raises(CheckpointError, match="failed"),
    ):
        _teacher({"name": "mlflow", "params": params})
    assert hostile["marker"].read_text() == "pwned"
    hostile["marker"].unlink()


def _kdforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "kdforge", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_serve_refuses_a_non_onnx_model(hostile, tmp_path) -> None:
    done = _kdforge(
        "serve",
        "evil-teacher",
        "--alias",
        "x",
        "--tracking-uri",
        hostile["tracking_uri"],
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    # No registered alias "x": the error is about fetching; with the version it is pickle.
    done = _kdforge(
        "serve", "models:/evil-teacher/1", "--tracking-uri", hostile["tracking_uri"], cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert "not an ONNX model" in done.stderr and "--trust-pickle" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not hostile["marker"].exists()
    assert list(tmp_path.iterdir()) == []


def test_serve_of_a_model_file_is_one_line_and_creates_nothing(tmp_path) -> None:
    (tmp_path / "student.pt").write_bytes(b"not a model")
    for arg in ("student.pt", str(tmp_path / "student.pt"), "/some/file.pt"):
        done = _kdforge("serve", arg, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[0].startswith("error: kdforge serve:") and "file path" in lines[0]
        assert len(lines) == 2 and lines[1].startswith("hint: serve takes a models:/")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["student.pt"]


def test_serve_of_a_name_without_a_store_creates_no_store(tmp_path) -> None:
    done = _kdforge("serve", "some-student", cwd=tmp_path)
    assert done.returncode == 2 and "no tracking store" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
