"""docs/tutorial.md, run as written: every ``bash`` block, in order, in an empty folder.

Blocks run with ``bash -euo pipefail`` and the virtualenv's ``bin`` first on ``PATH``
(``python``, ``kdforge``, ``mlflow``). A block that starts a server (``mlflow ui``,
``kdforge serve``) is started in the background and waited for; only its port is
changed, to a free one, so parallel test runs do not collide. The checks read what the
commands printed and wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.slow

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
_SERVERS = ("mlflow ui", "kdforge serve")


def tutorial_blocks(text: str) -> list[str]:
    """The ``bash`` code blocks of the page, in order."""
    return [m.group(1) for m in re.finditer(r"```bash\n(.*?)```", text, re.DOTALL)]


def test_tutorial_blocks_are_found() -> None:
    blocks = tutorial_blocks(TUTORIAL.read_text())
    assert len(blocks) == 7
    assert sum(block.startswith(_SERVERS) for block in blocks) == 2


def test_tutorial_runs_as_written(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    servers: list[subprocess.Popen] = []
    outputs: list[str] = []
    ports: dict[str, str] = {}
    try:
        for block in tutorial_blocks(TUTORIAL.read_text()):
            for old, new in ports.items():
                block = block.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
            if block.startswith(_SERVERS):
                port = re.search(r"--port (\d+)", block).group(1)
                ports[port] = str(free_port())
                command = block.strip().replace(f"--port {port}", f"--port {ports[port]}")
                ping = "health" if block.startswith("mlflow") else "ping"
                servers.append(
                    _start(command, f"http://127.0.0.1:{ports[port]}/{ping}", tmp_path, env)
                )
                continue
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, f"{block}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            outputs.append(done.stdout)
    finally:
        for server in servers:
            stop_server(server)

    search_out = outputs[2]
    assert re.search(r"data flowers: train \d+ rows, val \d+, test \d+, transfer 0", search_out)
    (search_dir,) = (tmp_path / "kdforge-runs" / "first-hour").iterdir()
    assert (search_dir / "report.html").is_file() and (search_dir / "student.onnx").is_file()
    assert not (search_dir / "student.onnx.data").exists()  # self-contained, as the page says
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["registered_model_name"] == "flowers-student"
    assert "leaderboard" in outputs[3].lower() or "trial" in outputs[3]
    answer = json.loads(outputs[-1])
    logits = answer["predictions"]["logits"]
    predicted = [row.index(max(row)) for row in logits]
    assert predicted == [0, 2], answer  # setosa, virginica: as the page says


def _start(command: str, ping: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    here = Path.cwd()
    os.chdir(cwd)  # start_server runs in the current folder
    old_env = dict(os.environ)
    os.environ.clear()  # exactly env: a variable env left out must not reach the server
    os.environ.update(env)
    try:
        return start_server(["bash", "-c", f"exec {command}"], ping, timeout_s=180)
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        os.chdir(here)
