"""Kill the driver with SIGKILL mid-search, then `kdforge resume` finishes the same search."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow

TRIALS = 6
EPOCHS = 12


def _kdforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_sigkill_then_resume_keeps_finished_trials(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "name": "resumable",
            "search.num_trials": TRIALS,
            "search.epochs": EPOCHS,
            "search.grace_period": EPOCHS,  # no early stopping: every trial runs all epochs
            "search.max_concurrent": 2,
            "export.registered_model_name": "resumable-student",
        },
    )
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    driver = subprocess.Popen(
        [sys.executable, "-u", "-m", "kdforge", "search", str(config)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    finished: list[str] = []
    deadline = time.monotonic() + 300
    assert driver.stdout is not None
    for line in driver.stdout:
        match = re.search(r"\] trial (\d{3}) finished", line)  # creation number
        if match:
            finished.append(match.group(1))
        if len(finished) >= 2 or time.monotonic() > deadline:
            break
    assert len(finished) >= 2, "the search did not get going"
    time.sleep(2.5)  # > TUNE_GLOBAL_CHECKPOINT_S: the experiment state has seen them
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    assert driver.returncode == -signal.SIGKILL

    (search_dir,) = (tmp_path / "runs" / "resumable").iterdir()
    assert not (search_dir / "summary.json").exists()
    resumed = _kdforge("resume", str(search_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming the search" in resumed.stdout

    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["num_trials"] == TRIALS
    client = MlflowClient(raw["tracking"]["uri"])
    experiment = client.get_experiment_by_name("kdforge")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kdforge.role") == "search"]
    assert len(parents) == 1 and parents[0].info.run_id == summary["parent_run_id"]
    assert parents[0].info.status == "FINISHED"
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"]
    ]
    assert len(children) == TRIALS
    by_trial = {int(r.data.tags["kdforge.trial_number"]): r for r in children}
    assert len(by_trial) == TRIALS  # one run per trial: a restarted trial's old run is retired
    for run in children:
        assert run.info.status in {"FINISHED", "FAILED", "KILLED"}
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert len(steps) == len(set(steps)), f"metrics logged twice: {steps}"
    for number in finished:
        history = client.get_metric_history(by_trial[int(number)].info.run_id, "val_acc")
        steps = [m.step for m in history]
        assert steps == list(range(1, EPOCHS + 1)), f"trial {number} was re-run: {steps}"
    version = client.get_model_version_by_alias("resumable-student", "champion")
    assert str(version.version) == "1"
