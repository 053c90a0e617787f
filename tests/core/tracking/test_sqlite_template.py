"""A new SQLite store is a copy of an empty, migrated template, and MLflow accepts it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kdforge.tracking.sqlite_template import copy_schema_template
from kdforge.tracking.store import setup_experiment


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("KDFORGE_CACHE_DIR", str(folder))
    return folder


def test_new_stores_are_copies_of_one_template(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    first = tmp_path / "a" / "mlflow.db"
    first.parent.mkdir()
    monkeypatch.chdir(first.parent)
    experiment = setup_experiment(f"sqlite:///{first}", "one")
    templates = list(cache.glob("mlflow-*-empty-store.db"))
    assert len(templates) == 1  # made once, by the first new store
    with sqlite3.connect(templates[0]) as db:
        assert db.execute("SELECT count(*) FROM experiments").fetchone() == (0,)

    second = tmp_path / "b" / "mlflow.db"
    second.parent.mkdir()
    monkeypatch.chdir(second.parent)
    made = templates[0].stat().st_mtime_ns
    assert copy_schema_template(f"sqlite:///{second}")
    assert templates[0].stat().st_mtime_ns == made  # copied, not rebuilt
    experiment = setup_experiment(f"sqlite:///{second}", "two")
    client = MlflowClient(f"sqlite:///{second}")
    # MLflow added its Default experiment itself, with this store's artifact location.
    default = client.get_experiment("0")
    assert default.name == "Default"
    assert str(second.parent) in default.artifact_location
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "acc", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.5}
    mlflow.set_tracking_uri(None)


def test_an_existing_store_or_another_uri_is_left_alone(cache: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"")
    assert not copy_schema_template(f"sqlite:///{store}")
    assert store.read_bytes() == b""
    assert not copy_schema_template("http://127.0.0.1:5000")
    assert not cache.exists()
