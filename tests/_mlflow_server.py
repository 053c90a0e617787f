"""Start and stop a real ``mlflow server`` on 127.0.0.1 for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    folder: Path,
    port: int | None = None,
    timeout: float = 180,
    app_name: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow server`` (SQLite + local artifacts in ``folder``); wait for /health.

    Args:
        folder: Holds the store, the artifacts (and ``basic_auth.db``: it is the cwd).
        port: Default: a free one.
        timeout: Seconds to wait for /health.
        app_name: ``--app-name`` (e.g. ``basic-auth``).
        env: Extra environment of the server.
    """
    port = port or free_port()
    bin_dir = Path(sys.executable).parent
    argv = [
        str(bin_dir / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        *(["--app-name", app_name] if app_name else []),
    ]
    env = {
        **os.environ,
        **(env or {}),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 - a pipe could fill up and block it
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=folder
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"mlflow server exited: {log.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"mlflow server on {url} did not answer /health in {timeout}s")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (its workers too), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
