"""A search joins an existing two-node Ray cluster and runs trials on both nodes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray(*args: str, log: Path) -> subprocess.Popen:
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen(
        [ray, "start", "--block", *args],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait_for_nodes(address: str, count: int, timeout: float = 120) -> None:
    code = (
        "import ray, sys; ray.init(address=sys.argv[1], include_dashboard=False, "
        "log_to_driver=False, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-c", code, address], capture_output=True, text=True, timeout=60
        )
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    raise AssertionError(f"the cluster at {address} did not reach {count} nodes")


@pytest.fixture
def two_node_cluster(tmp_path: Path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = Path("/tmp") / f"kdf-ray-{port}"  # short: Ray's socket paths have a length limit
    head = _ray(
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
        log=tmp_path / "head.log",
    )
    nodes = [head]
    try:
        _wait_for_nodes(address, 1)
        nodes.append(_ray(f"--address={address}", "--num-cpus=1", log=tmp_path / "worker.log"))
        _wait_for_nodes(address, 2)
        yield address
    finally:
        for process in reversed(nodes):  # SIGTERM drains and stops only that node
            process.send_signal(signal.SIGTERM)
        for process in nodes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_search_runs_trials_on_both_nodes(
    two_node_cluster: str, digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": 4,
            "search.epochs": 6,
            "search.grace_period": 6,
            "search.max_concurrent": 2,
        },
    )
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = subprocess.run(
        [sys.executable, "-m", "kdforge", "search", str(config), "--address", two_node_cluster],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # teacher_inference.where: auto ran the teacher as a Ray job on both nodes.
    assert "teacher outputs: Ray job, 2 actors on 2 nodes" in out.stdout, out.stdout[-3000:]
    client = MlflowClient(raw["tracking"]["uri"])
    runs = client.search_runs(
        [client.get_experiment_by_name("kdforge").experiment_id],
        filter_string="tags.`kdforge.role` = 'trial'",
    )
    assert len(runs) == 4
    nodes = {run.data.tags.get("kdforge.node_id") for run in runs}
    assert None not in nodes and len(nodes) == 2, nodes
    (search_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    leaderboard = (search_dir / "leaderboard.csv").read_text()
    assert all(node in leaderboard for node in nodes)
