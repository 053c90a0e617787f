"""The team stack is closed by default (issue 20 item 2).

* The compose file, parsed: every published port binds to 127.0.0.1 unless the user
  sets ``KDFORGE_BIND``, every secret is a ``${VAR:?...}`` (compose refuses to start
  without it), and MLflow runs its ``basic-auth`` app.
* A real ``mlflow server --app-name basic-auth`` on 127.0.0.1: ``kdforge
  train-teacher`` (a real CLI subprocess) logs to it with the credentials from the
  environment, and is refused in one line without them or with a wrong password.

Docker is not available where these tests run, so the compose file itself is checked
as YAML, not started.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests._mlflow_server import start_server, stop_server

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yaml"
SECRET = re.compile(r"PASSWORD|SECRET", re.IGNORECASE)
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR:?msg} fails when VAR is unset, ${VAR:-d} defaults."""

    def required(match: re.Match[str]) -> str:
        if not env.get(match.group(1)):
            raise KeyError(match.group(1))
        return env[match.group(1)]

    text = REQUIRED.sub(required, text)
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), text)
    return text.replace("$$", "$")


def _required_variables() -> set[str]:
    return set(REQUIRED.findall(COMPOSE.read_text()))


def _full_env() -> dict[str, str]:
    return {name: f"value-of-{name.lower()}" for name in _required_variables()}


def test_compose_refuses_to_start_without_each_credential() -> None:
    names = _required_variables()
    assert {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
    } <= names
    for name in names:
        env = _full_env()
        del env[name]
        with pytest.raises(KeyError):
            _interpolate(COMPOSE.read_text(), env)
    yaml.safe_load(_interpolate(COMPOSE.read_text(), _full_env()))


def test_every_secret_is_required_never_defaulted() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())  # not interpolated: the ${...} text itself
    secrets = 0
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET.search(key):
                secrets += 1
                assert REQUIRED.fullmatch(str(value)), f"{name}.{key} = {value!r}"
        for part in service.get("command") or []:
            assert ":-mlflow}@" not in str(part) and "minio-secret" not in str(part)
    assert secrets >= 6
    assert "minio-secret" not in COMPOSE.read_text()


def test_published_ports_bind_to_localhost_unless_opened() -> None:
    closed = yaml.safe_load(_interpolate(COMPOSE.read_text(), _full_env()))
    published = {n: s.get("ports", []) for n, s in closed["services"].items() if s.get("ports")}
    assert set(published) == {"mlflow", "student"}  # postgres and minio publish nothing
    for ports in published.values():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), port
    opened = yaml.safe_load(
        _interpolate(COMPOSE.read_text(), {**_full_env(), "KDFORGE_BIND": "0.0.0.0"})
    )
    assert all(str(p).startswith("0.0.0.0:") for p in opened["services"]["mlflow"]["ports"])


def test_mlflow_runs_the_basic_auth_app_and_clients_get_the_credentials() -> None:
    services = yaml.safe_load(_interpolate(COMPOSE.read_text(), _full_env()))["services"]
    command = services["mlflow"]["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "value-of-mlflow_tracking_username"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "value-of-mlflow_tracking_password"
    student = services["student"]["environment"]
    assert student["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert student["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert "mlflow-auth" in services["mlflow"]["volumes"][0]  # the user store persists


USER, PASSWORD = "kdforge-admin", "a-long-test-password-0"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("auth-server")
    process, url = start_server(
        folder,
        app_name="basic-auth",
        env={
            "MLFLOW_AUTH_ADMIN_USERNAME": USER,
            "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
        },
    )
    yield url
    stop_server(process)


def _train_teacher(tmp_path: Path, url: str, **credentials: str) -> subprocess.CompletedProcess:
    config = {
        "name": "auth-teacher",
        "dataset": {"name": "digits"},
        "architecture": {"name": "mlp", "params": {"depth": 1, "width_0": 16}},
        "training": {"epochs": 1},
        "output": str(tmp_path / "teacher.pt"),
        "tracking": {"uri": url},
    }
    file = tmp_path / "teacher.yaml"
    file.write_text(yaml.safe_dump(config))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"))
    }
    env.update(credentials)
    return subprocess.run(
        [sys.executable, "-m", "kdforge", "train-teacher", str(file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("password", [None, "wrong-password"])
def test_kdforge_is_refused_in_one_line_without_valid_credentials(
    auth_server: str, tmp_path: Path, password: str | None
) -> None:
    credentials = (
        {}
        if password is None
        else {
            "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": password,
        }
    )
    done = _train_teacher(tmp_path, auth_server, **credentials)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert "refused the credentials (HTTP 401)" in lines[0]
    assert ("without" if password is None else "with") + " credentials" in lines[0]
    assert "MLFLOW_TRACKING_USERNAME" in lines[1]
    assert not (tmp_path / "teacher.pt").exists()  # refused before any training


def test_kdforge_logs_with_credentials_from_the_environment(
    auth_server: str, tmp_path: Path
) -> None:
    done = _train_teacher(
        tmp_path,
        auth_server,
        MLFLOW_TRACKING_USERNAME=USER,
        MLFLOW_TRACKING_PASSWORD=PASSWORD,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = USER, PASSWORD
    try:
        client = MlflowClient(auth_server)
        experiment = client.get_experiment_by_name("kdforge")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 1 and runs[0].data.metrics
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
