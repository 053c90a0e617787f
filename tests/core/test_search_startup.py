"""``start_tracking_and_ray``: the MLflow experiment is set up while Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.errors import TrackingError
from kdforge.search_runner import start_tracking_and_ray


def test_sets_up_the_experiment_and_reuses_a_running_ray(
    ray_session, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # restored afterwards
    experiment_id, started = start_tracking_and_ray(tracking_uri, "startup", None)
    assert started is False  # Ray was running already: not ours to shut down
    assert ray_session.is_initialized()
    assert mlflow.get_tracking_uri() == tracking_uri
    assert MlflowClient(tracking_uri).get_experiment(experiment_id).name == "startup"
    # A second search in the same store finds the same experiment.
    assert start_tracking_and_ray(tracking_uri, "startup", None) == (experiment_id, False)


def test_a_tracking_error_is_raised_in_the_caller(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"nosuchscheme://{tmp_path}"  # MLflow has no store for this scheme
    with pytest.raises(TrackingError, match="startup"):
        start_tracking_and_ray(uri, "startup", None)
    assert ray_session.is_initialized()  # a Ray it did not start is left running
