"""Each failure is one line, with its traceback in a file and in MLflow; runs all end.

Real ``kdforge search`` processes with faults injected in the Ray workers
(:mod:`tests.e2e._faults`): a NaN loss, a full disk (a write raising ENOSPC), a worker
that dies once (retried) and one that always dies.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _search(teacher: Path, tmp_path: Path, fault: str, **overrides: Any):
    raw = tiny_search_config(
        teacher,
        tmp_path,
        **{
            "loss.name": "fault_test",
            "loss.params": {"fault": fault, "marker": str(tmp_path / "died")},
            "search.num_trials": 2,
            "search.epochs": 2,
            "search.grace_period": 2,
            "search.max_concurrent": 1,
            "search.max_failures": 2,
            "baseline.enabled": False,
            **overrides,
        },
    )
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e._faults", "search", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    (folder,) = (tmp_path / "runs" / "tiny").iterdir()
    return done, folder, raw["tracking"]["uri"]


def _trial_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("kdforge")
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if r.data.tags.get("kdforge.role") == "trial"]


def _no_noise(text: str) -> None:
    assert "Traceback" not in text and "ray.exceptions" not in text, text[-4000:]


def test_a_nan_loss_is_one_line_per_trial_with_the_traceback_kept(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    done, folder, uri = _search(digits_teacher_path, tmp_path, "nan")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    _no_noise(output)
    failed = [line for line in output.splitlines() if re.search(r"\] trial \w+ failed", line)]
    assert len(failed) == 2, output
    for line in failed:
        # NaN before any update: the loss is at fault, not the learning rate.
        assert "the loss itself" in line and "learning-rate" not in line
        assert "traceback: " in line
    files = sorted((folder / "failures").glob("trial-*.txt"))
    assert len(files) == 2 and all("Traceback" in f.read_text() for f in files)
    runs = _trial_runs(uri)
    assert len(runs) == 2
    client = MlflowClient(uri)
    for run in runs:
        assert run.info.status == "FAILED"
        names = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert any(n.startswith("trial-") and n.endswith(".txt") for n in names), names


def test_a_full_disk_in_a_trial_is_reported_as_disk_full(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    done, _, uri = _search(digits_teacher_path, tmp_path, "enospc")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    _no_noise(output)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the disk is full" in errors[0], done.stderr
    # The full disk stops the search: no second trial tries to write.
    assert len(_trial_runs(uri)) == 1
    assert all(r.info.status in {"FAILED", "KILLED", "FINISHED"} for r in _trial_runs(uri))


def test_a_dead_worker_is_retried_once(digits_teacher_path: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    done, _, uri = _search(digits_teacher_path, tmp_path, "die_once", **{"search.num_trials": 1})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert (tmp_path / "died").exists()  # the first attempt did die
    assert "retrying it once" in output and " finished " in output
    _no_noise(output)
    (run,) = _trial_runs(uri)  # the died attempt's run is retired, not duplicated
    assert run.info.status == "FINISHED"
    steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "val_acc")]
    assert steps == [1, 2]


def test_a_worker_that_always_dies_fails_after_one_retry(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    done, folder, uri = _search(digits_teacher_path, tmp_path, "die", **{"search.num_trials": 1})
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    failed = [line for line in output.splitlines() if re.search(r"\] trial \w+ failed", line)]
    assert len(failed) == 1, output
    assert output.count("retrying it once") == 1
    assert "its Ray worker died" in failed[0] and len(failed[0]) < 300
    text = (folder / "failures" / "trial-000.txt").read_text()
    assert "retried once" in text
    assert [r.info.status for r in _trial_runs(uri)] == ["FAILED"]
