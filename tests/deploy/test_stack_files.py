"""deploy/Dockerfile, deploy/mlflow.Dockerfile and deploy/docker-compose.yaml are consistent.

No Docker daemon is needed: the files are parsed, the commands they run are checked
against the real command-line parsers (``kdforge serve``'s argparse, ``mlflow
server``'s click options), and every port, host and credential that one service
uses must be one that another service really provides.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from kdforge.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent


def _dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined."""
    text = (DEPLOY / name).read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in instructions:
        if instruction == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def _expand(text: str, env: dict[str, str]) -> str:
    """Shell/compose-style ${VAR:-default}, ${VAR:?error}, ${VAR} and $VAR expansion.

    A required ``${VAR:?...}`` that ``env`` lacks becomes ``<VAR>``, so the services
    that share one secret can be compared.
    """
    text = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: env.get(m.group(1), f"<{m.group(1)}>"), text)
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), text)
    text = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), text)
    return re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(_expand((DEPLOY / "docker-compose.yaml").read_text(), {}))


def test_server_dockerfile_runs_a_valid_kdforge_serve_on_its_exposed_port():
    instructions = _dockerfile("Dockerfile")
    assert instructions[0][0] == "FROM"
    for instruction, args in instructions:
        if instruction == "COPY":
            for source in shlex.split(args)[:-1]:
                if "*" not in source:
                    assert (REPO / source).exists(), f"COPY {source}: no such path"
    cmd = yaml.safe_load(dict(instructions)["CMD"])  # JSON exec form
    assert cmd[:2] == ["sh", "-c"]
    line = shlex.split(_expand(cmd[2], _env(instructions)))
    assert line[:3] == ["exec", "kdforge", "serve"]
    args = build_parser().parse_args(line[2:])
    assert args.model == "models:/digits-student@champion"
    assert args.host == "0.0.0.0"
    exposed = {int(p) for i, a in instructions if i == "EXPOSE" for p in a.split()}
    assert exposed == {args.port}
    assert f"127.0.0.1:{args.port}/ping" in dict(instructions)["HEALTHCHECK"]


def test_compose_has_the_three_services_and_valid_dependencies(compose):
    services = compose["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]


def _mlflow_server_args(compose: dict) -> dict[str, str | bool]:
    command = compose["services"]["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    from mlflow.cli import server

    known = {opt: param for param in server.params for opt in param.opts + param.secondary_opts}
    args: dict[str, str | bool] = {}
    rest = command[2:]
    while rest:
        option = rest.pop(0)
        assert option in known, f"mlflow server has no option {option}"
        args[option] = True if getattr(known[option], "is_flag", False) else rest.pop(0)
    return args


def test_mlflow_uses_postgres_and_minio_as_they_are_configured(compose):
    services = compose["services"]
    args = _mlflow_server_args(compose)
    backend = urlparse(str(args["--backend-store-uri"]))
    pg = services["postgres"]["environment"]
    assert backend.scheme == "postgresql" and backend.hostname == "postgres"
    assert backend.port == 5432  # postgres' default port; the image has no override
    assert (backend.username, backend.password, backend.path.lstrip("/")) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )

    env = services["mlflow"]["environment"]
    s3 = urlparse(env["MLFLOW_S3_ENDPOINT_URL"])
    minio_command = services["minio"]["command"]
    assert s3.hostname == "minio"
    assert minio_command[minio_command.index("--address") + 1] == f":{s3.port}"
    minio_env = services["minio"]["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"] == "<MINIO_ROOT_USER>"
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    bucket = urlparse(str(args["--artifacts-destination"])).netloc
    assert f"local/{bucket}" in services["minio-init"]["command"][0]
    assert args["--serve-artifacts"] is True

    port = str(args["--port"])
    assert args["--host"] == "0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in services["mlflow"]["ports"]
    assert f"127.0.0.1:{port}/health" in " ".join(services["mlflow"]["healthcheck"]["test"])


def test_model_server_service_reaches_mlflow_and_publishes_its_port(compose):
    services = compose["services"]
    student = services["student"]
    tracking = urlparse(student["environment"]["MLFLOW_TRACKING_URI"])
    assert tracking.hostname == "mlflow"
    assert str(tracking.port) == str(_mlflow_server_args(compose)["--port"])
    allowed = str(_mlflow_server_args(compose)["--allowed-hosts"]).split(",")
    assert "mlflow:*" in allowed  # mlflow refuses Host headers it does not allow
    exposed = [
        a for i, a in _dockerfile(student["build"]["dockerfile"].split("/")[-1]) if i == "EXPOSE"
    ]
    assert student["ports"] == [f"127.0.0.1:{exposed[0]}:{exposed[0]}"]


def test_mlflow_image_installs_the_drivers_compose_needs():
    run = " ".join(a for i, a in _dockerfile("mlflow.Dockerfile") if i == "RUN")
    assert "psycopg2" in run and "boto3" in run and "mlflow[auth]==" in run
