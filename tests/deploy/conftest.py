"""Fixtures for the deploy tests: a registered student, free ports, server processes.

The student is built without a search, the way a search's final step builds it: a
small MLP trained on digits for a few epochs, written as ``student.pt``, exported by
kdforge's ``onnx`` exporter and logged with ``mlflow.onnx.log_model`` into a SQLite
store under a temporary folder that looks like a finished search folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

MODEL_NAME = "deploy-test-student"


@dataclass(frozen=True)
class RegisteredStudent:
    """A student registered as ``models:/MODEL_NAME@champion`` in ``tracking_uri``."""

    search_dir: Path
    tracking_uri: str
    model_uri: str
    test_x: np.ndarray
    torch_logits: np.ndarray


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes | str, timeout: float = 30.0) -> tuple[int, dict]:
    """POST ``body`` as JSON; return the status and the decoded JSON answer."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_server(
    argv: Sequence[str],
    ping_url: str,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start ``argv`` in its own process group and wait until ``ping_url`` answers 200.

    ``env`` is added to this process's environment for the server.

    Output goes to a temporary file (a pipe would fill up and block a chatty server);
    it is shown if the server dies before answering.
    """
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"server exited with {process.returncode}: {output[-3000:]}")
        try:
            with urllib.request.urlopen(ping_url, timeout=2) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    stop_server(process)
    raise RuntimeError(f"server did not answer {ping_url} within {timeout_s}s")


def stop_server(process: subprocess.Popen, timeout_s: float = 30.0) -> int:
    """SIGTERM the server's process group, SIGKILL it if it lingers; return the exit code."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Children (uvicorn) share the group; make sure none outlived the parent.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return int(process.returncode)


def port_is_closed(port: int) -> bool:
    """Whether nothing accepts connections on 127.0.0.1:port any more."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def kdforge_cli(*args: str) -> list[str]:
    """The argv that runs the ``kdforge`` CLI of this checkout in a subprocess."""
    return [sys.executable, "-m", "kdforge.cli", *args]


@pytest.fixture(scope="session")
def registered_student(tmp_path_factory: pytest.TempPathFactory) -> RegisteredStudent:
    """A trained student, exported and registered as a search would (about 10 s)."""
    import mlflow

    from kdforge import build_checkpoint_model, load_checkpoint, save_checkpoint
    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate
    from kdforge.tracking.registry import register_onnx
    from kdforge.tracking.store import setup_experiment
    from kdforge.training.trainer import TrainSettings, train_model

    root = tmp_path_factory.mktemp("deploy")
    search_dir = root / "runs" / "tiny" / "20261128-000000"
    search_dir.mkdir(parents=True)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    splits = instantiate("dataset", PluginRef(name="digits"), "dataset").load(0)
    space = instantiate("search_space", PluginRef(name="mlp"), "student")
    arch = {"depth": 1, "width_0": 32, "dropout": 0.0}
    torch.manual_seed(0)
    model = space.build(arch, splits.info)
    train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=6, lr=1e-2, seed=0),
    )
    save_checkpoint(
        search_dir / "student.pt", space="mlp", arch=arch, info=splits.info, model=model
    )
    exporter = instantiate("exporter", PluginRef(name="onnx"), "export.exporter")
    exporter.export(model, splits.test.x[:64].float(), search_dir / "student.onnx")

    setup_experiment(tracking_uri, "kdforge")
    with mlflow.start_run(run_name="deploy-fixture"):
        version = register_onnx(
            search_dir / "student.onnx",
            name=MODEL_NAME,
            example=splits.test.x[:4].numpy(),
            alias="champion",
        )
    raw = {
        "name": "tiny",
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint", "params": {"path": str(root / "teacher.pt")}},
        "student": {"name": "mlp"},
        "tracking": {"uri": tracking_uri},
        "export": {"registered_model_name": MODEL_NAME},
    }
    (search_dir / "config.yaml").write_text(yaml.safe_dump(raw))
    summary = {
        "search": "tiny",
        "student_test_acc": None,
        "export_path": str(search_dir / "student.onnx"),
        "registered_model_name": MODEL_NAME,
        "registered_model_version": version,
        "registered_alias": "champion",
        "model_uri": f"models:/{MODEL_NAME}@champion",
        "tracking_uri": tracking_uri,
    }
    (search_dir / "summary.json").write_text(json.dumps(summary))

    # The reference: the PyTorch student as saved in student.pt, not the trained object.
    student = build_checkpoint_model(load_checkpoint(search_dir / "student.pt"))
    test_x = splits.test.x[:16].numpy()
    with torch.no_grad():
        torch_logits = student(torch.from_numpy(test_x)).numpy()
    return RegisteredStudent(
        search_dir=search_dir,
        tracking_uri=tracking_uri,
        model_uri=f"models:/{MODEL_NAME}@champion",
        test_x=test_x,
        torch_logits=torch_logits,
    )


@pytest.fixture
def server_process() -> Iterator[list[subprocess.Popen]]:
    """Collects started servers and stops every one of them after the test."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        stop_server(process)
