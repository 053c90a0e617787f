"""Shared fixtures: one local Ray for the whole session, temp MLflow stores, a tiny teacher.

Tests that need Ray take the ``ray_session`` fixture; it starts one local Ray instance
(2 CPUs, no dashboard) the first time and shuts it down at the end of the session: one
per test process (``scripts/test`` runs two, with pytest-xdist).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# kdforge's user cache (the `kdforge ray start` address, the empty-store template) is the
# session's own: tests never join a developer's shared Ray nor write to ~/.cache.
os.environ["KDFORGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="kdforge-test-cache-")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every test that needs it."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    yield ray
    ray.shutdown()


_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# Taken when the suite starts, before any fixture runs: a session fixture (a teacher
# trained once) that sets the URI during some test's set-up must not leak either.
_MLFLOW_URI_AT_START = {name: os.environ.get(name) for name in _MLFLOW_URI_VARIABLES}


@pytest.fixture(autouse=True)
def _mlflow_uri_variables_restored() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` to child
    processes: a test (or a fixture it set up) that calls it must not point a later
    test's subprocesses (a search, ``kdforge serve``) at its own store, whatever order
    the tests run in."""
    yield
    for name, value in _MLFLOW_URI_AT_START.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh MLflow SQLite store in a temporary directory."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def digits_teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP teacher on digits, trained once per session (a few seconds)."""
    from kdforge.config import TeacherConfig
    from kdforge.teacher.train_teacher import train_teacher

    folder = tmp_path_factory.mktemp("teacher")
    config = TeacherConfig.model_validate(
        {
            "name": "test-teacher",
            "dataset": {"name": "digits"},
            "architecture": {
                "name": "mlp",
                "params": {"depth": 2, "width_0": 256, "width_1": 128, "dropout": 0.1},
            },
            "training": {"epochs": 15},
            "output": str(folder / "teacher.pt"),
            "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
        }
    )
    train_teacher(config, emit=lambda _: None)
    return folder / "teacher.pt"


def tiny_search_config(teacher_path: Path, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A raw search config for a very small search (3 trials, 4 epochs)."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "output_dir": str(tmp_path / "runs"),
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint", "params": {"path": str(teacher_path)}},
        "student": {"name": "mlp", "params": {"max_depth": 2, "max_width": 32}},
        "search": {"num_trials": 3, "epochs": 4, "grace_period": 2},
        "baseline": {"seeds": 1},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "export": {"registered_model_name": "tiny-student"},
    }
    for dotted, value in overrides.items():
        node = raw
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return raw
