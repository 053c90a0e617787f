"""The tracking server dies mid-search: no trial result is lost, and resume logs them."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests._mlflow_server import start_server, stop_server
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow

TRIALS = 5


def test_server_lost_mid_search_then_resume(digits_teacher_path: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = tmp_path / "server"
    store.mkdir()
    server, url = start_server(store)
    try:
        raw = tiny_search_config(
            digits_teacher_path,
            tmp_path,
            **{
                "name": "lossy",
                "search.num_trials": TRIALS,
                "search.epochs": 10,
                "search.grace_period": 10,
                "search.max_concurrent": 2,
                "export.registered_model_name": "lossy-student",
            },
        )
        raw["tracking"] = {"uri": url}
        config = tmp_path / "search.yaml"
        config.write_text(yaml.safe_dump(raw))
        search = subprocess.Popen(
            [sys.executable, "-u", "-m", "kdforge", "search", str(config)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert search.stdout is not None
        output = []
        for line in search.stdout:
            output.append(line)
            if re.search(r"\] trial \w+ finished", line):
                break
        stop_server(server)  # the tracking server goes away mid-search
        output.append(search.stdout.read())
        search.wait(timeout=600)
    finally:
        stop_server(server)
    printed = "".join(output)
    assert search.returncode == 2, printed[-3000:]
    assert "went away during the search" in printed and "kdforge resume" in printed
    assert "Traceback" not in printed

    (search_dir,) = (tmp_path / "runs" / "lossy").iterdir()
    with open(search_dir / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == TRIALS and all(r["status"] == "finished" for r in rows)
    assert (search_dir / "tracking-journal.jsonl").exists()

    server, url = start_server(store)  # back, on another port
    try:
        resumed = subprocess.run(
            [sys.executable, "-m", "kdforge", "resume", str(search_dir), "--tracking-uri", url],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "tracking calls kept while MLflow was unreachable" in resumed.stdout
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("kdforge")
        runs = client.search_runs([experiment.experiment_id])
        parents = [r for r in runs if r.data.tags.get("kdforge.role") == "search"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        children = [
            r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
        ]
        assert len(children) == TRIALS
        for child in children:
            assert child.data.tags.get("kdforge.status") == "finished"
            assert len(client.get_metric_history(child.info.run_id, "val_acc")) == 10
        assert client.get_model_version_by_alias("lossy-student", "champion")
    finally:
        stop_server(server)
        time.sleep(0.5)
