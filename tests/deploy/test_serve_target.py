"""``kdforge serve``'s model argument and the mlflow command it runs (no server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from kdforge.cli import main
from kdforge.deploy.serve import ServeTarget, mlflow_serve_command, resolve_target
from kdforge.errors import ConfigError

MLFLOW_APP = "kdforge.deploy.mlflow_app:create_app"


def _search_dir(tmp_path: Path, summary: dict) -> Path:
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(yaml.safe_dump({"tracking": {"uri": "sqlite:///x/m.db"}}))
    return folder


def test_search_folder_serves_its_registered_model(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = _search_dir(tmp_path, {"model_uri": "models:/s@champion"})
    target = resolve_target(str(folder))
    assert target.model_uri == "models:/s@champion"
    assert target.tracking_uri == "sqlite:///" + str(Path("x/m.db").resolve())
    assert resolve_target(str(folder), tracking_uri="http://h:5000").tracking_uri == "http://h:5000"


def test_search_folder_store_beats_an_ambient_tracking_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/other.db")
    folder = _search_dir(
        tmp_path, {"model_uri": "models:/s@champion", "tracking_uri": "sqlite:////runs/m.db"}
    )
    assert resolve_target(str(folder)).tracking_uri == "sqlite:////runs/m.db"
    (folder / "summary.json").write_text(json.dumps({"model_uri": "models:/s@champion"}))
    assert resolve_target(str(folder)).tracking_uri == "sqlite:///" + str(Path("x/m.db").resolve())
    (folder / "config.yaml").write_text(yaml.safe_dump({"tracking": {"uri": None}}))
    assert resolve_target(str(folder)).tracking_uri == "sqlite:////elsewhere/other.db"


def test_name_uri_and_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_target("digits-student") == ServeTarget(
        "models:/digits-student@champion", "http://tracking:5000"
    )
    assert resolve_target("digits-student", alias="int8").model_uri == "models:/digits-student@int8"
    assert resolve_target("models:/x/3").model_uri == "models:/x/3"
    assert resolve_target("runs:/abc/student").model_uri == "runs:/abc/student"


def test_search_without_registered_model_is_a_config_error(tmp_path):
    folder = _search_dir(tmp_path, {"search": "x"})
    with pytest.raises(ConfigError, match="registered no model"):
        resolve_target(str(folder))
    assert main(["serve", str(folder)]) == 2


def test_mlflow_command_runs_the_scoring_app_with_limits():
    argv, env = mlflow_serve_command(
        ServeTarget("models:/s@champion", "sqlite:///m.db"), port=5123, max_rows=7, max_body_mb=2
    )
    assert argv[:5] == [sys.executable, "-m", "uvicorn", "--factory", MLFLOW_APP]
    assert argv[argv.index("--port") + 1] == "5123"
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///m.db"
    assert env["KDFORGE_SERVE_MODEL_URI"] == "models:/s@champion"
    assert (env["KDFORGE_SERVE_MAX_ROWS"], env["KDFORGE_SERVE_MAX_BODY_BYTES"]) == ("7", "2000000")
    with pytest.raises(ConfigError, match="limits must allow a request"):
        mlflow_serve_command(ServeTarget("models:/s@champion", "x"), max_rows=0)


def test_bad_ray_settings_are_reported(capsys):
    assert main(["serve", "models:/s@champion", "--ray", "--max-batch-size", "0"]) == 2
    assert "max_batch_size must be >= 1" in capsys.readouterr().err
