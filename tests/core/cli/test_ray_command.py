"""``kdforge ray start``: a local Ray that a later process joins, and ``stop`` ends it."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kdforge.cluster.ray_init import shared_ray_address

_JOIN = (
    "import ray\n"
    "from kdforge.cluster.ray_init import init_ray\n"
    "init_ray(None)\n"
    "print('GCS', ray.get_runtime_context().gcs_address)\n"
    "ray.shutdown()\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["disabled", "token by default"])
def test_a_started_ray_is_joined_then_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    """With ``RAY_AUTH_MODE`` unset and a token in ``~/.ray`` (Ray's own default),
    ``ray start`` requires the token; a later command must send it to join."""
    env = {**os.environ, "KDFORGE_CACHE_DIR": str(tmp_path / "cache")}
    if auth != "disabled":
        env.pop("RAY_AUTH_MODE", None)
        env["HOME"] = str(tmp_path / "home")
        (tmp_path / "home" / ".ray").mkdir(parents=True)
        (tmp_path / "home" / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    kdforge = [sys.executable, "-m", "kdforge.cli"]
    port = _free_port()
    started = subprocess.run(
        [*kdforge, "ray", "start", "--num-cpus", "1", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout
        status = subprocess.run(
            [*kdforge, "ray", "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert f"local Ray at 127.0.0.1:{port}" in status.stdout
        joined = subprocess.run(
            [sys.executable, "-c", _JOIN], env=env, capture_output=True, text=True, timeout=300
        )
        assert joined.stdout.startswith("GCS ") and f":{port}" in joined.stdout, joined.stderr[
            -2000:
        ]
    finally:
        stopped = subprocess.run(
            [*kdforge, "ray", "stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert "stopped the local Ray" in stopped.stdout
    with socket.socket() as s:  # nothing listens on its port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0
    monkeypatch.setenv("KDFORGE_CACHE_DIR", env["KDFORGE_CACHE_DIR"])
    assert shared_ray_address() is None
