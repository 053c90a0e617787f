"""Searches started together on one new SQLite store and one output folder all finish."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_search_config


def _setup(uri: str, start: object, out: object) -> None:
    from kdforge.tracking.store import setup_experiment

    start.wait()  # type: ignore[attr-defined]
    try:
        out.put(setup_experiment(uri, "together"))  # type: ignore[attr-defined]
    except Exception as exc:  # reported to the test, which fails on it
        out.put(f"error: {exc}")  # type: ignore[attr-defined]


def _new_dir(output_dir: str, start: object, out: object) -> None:
    from kdforge.config import SearchConfig
    from kdforge.search.folder import new_search_dir

    config = SearchConfig.model_validate(
        {
            "name": "same",
            "output_dir": output_dir,
            "dataset": {"name": "digits"},
            "teacher": {"name": "checkpoint", "params": {"path": "t.pt"}},
            "student": {"name": "mlp"},
        }
    )
    start.wait()  # type: ignore[attr-defined]
    try:
        out.put(str(new_search_dir(config)))  # type: ignore[attr-defined]
    except Exception as exc:
        out.put(f"error: {exc}")  # type: ignore[attr-defined]


def _log_datasets(uri: str, rounds: int, barrier: object, out: object) -> None:
    import mlflow

    from kdforge.plugins.datasets.digits import Digits
    from kdforge.tracking.run_metadata import log_dataset_inputs

    mlflow.set_tracking_uri(uri)
    splits = Digits().load(0)
    try:
        for round_ in range(rounds):
            mlflow.set_experiment(f"race-{round_}")
            with mlflow.start_run():
                barrier.wait(timeout=120)  # type: ignore[attr-defined]
                log_dataset_inputs(splits, "digits")
        out.put("ok")  # type: ignore[attr-defined]
    except Exception as exc:
        out.put(f"error: {exc}"[:2000])  # type: ignore[attr-defined]


def _race(target, args: tuple, n: int) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, out)) for _ in range(n)]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return results


@pytest.mark.slow  # each process imports MLflow: a minute on a loaded machine
@pytest.mark.parametrize("round_", range(2))
def test_processes_creating_one_new_store_together_all_succeed(tmp_path, round_) -> None:
    results = _race(_setup, (f"sqlite:///{tmp_path / 'mlflow.db'}",), 3)
    assert not [r for r in results if r.startswith("error")], results
    assert len(set(results)) == 1  # one experiment, found by all


def test_searches_started_in_the_same_second_get_their_own_folders(tmp_path) -> None:
    results = _race(_new_dir, (str(tmp_path / "runs"),), 4)
    assert not [r for r in results if r.startswith("error")], results
    assert len(set(results)) == 4 and all(Path(r).is_dir() for r in results)


@pytest.mark.slow  # each process imports MLflow
def test_searches_logging_one_dataset_at_once_all_succeed(tmp_path: Path) -> None:
    """Processes inserting one dataset row at once: the losers link it instead of failing.

    Each round, every process logs the same dataset into a new experiment at the same
    instant; without the retry in ``log_dataset_inputs`` some round ends in SQLite's
    unique-index error (as two real searches once did in CI).
    """
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    rounds, n = 12, 4
    for round_ in range(rounds):
        client.create_experiment(f"race-{round_}")
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_log_datasets, args=(uri, rounds, barrier, out)) for _ in range(n)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert results == ["ok"] * n, results
    ids = [client.get_experiment_by_name(f"race-{r}").experiment_id for r in range(rounds)]
    runs = client.search_runs(ids)
    assert len(runs) == rounds * n
    assert all(len(run.inputs.dataset_inputs) == 3 for run in runs)


@pytest.mark.slow
def test_two_searches_at_once_on_one_new_store_both_finish(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": 1,
            "search.epochs": 1,
            "search.grace_period": 1,
            "search.max_concurrent": 1,
            "baseline.enabled": False,
        },
    )
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "kdforge", "search", str(config)]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=600)[0].decode() for proc in procs]
    for proc, text in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, text[-3000:]
    folders = sorted((tmp_path / "runs" / "tiny").iterdir())
    assert len(folders) == 2
    versions = {
        json.loads((f / "summary.json").read_text())["registered_model_version"] for f in folders
    }
    assert versions == {"1", "2"}
