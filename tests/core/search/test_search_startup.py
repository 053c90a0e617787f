"""Search services: Ray and the MLflow experiment started in the background."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kdforge.errors import TrackingError
from kdforge.search.services import SearchServices


def test_sets_up_the_experiment_and_reuses_a_running_ray(
    ray_session, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # restored afterwards
    services = SearchServices(tracking_uri, "startup", None)
    experiment_id, started = services.wait()
    services.close()
    assert started is False  # Ray was running already: not ours to shut down
    assert ray_session.is_initialized()
    assert mlflow.get_tracking_uri() == tracking_uri
    assert experiment_id is not None
    assert MlflowClient(tracking_uri).get_experiment(experiment_id).name == "startup"
    # A second search in the same store finds the same experiment.
    again = SearchServices(tracking_uri, "startup", None)
    assert again.wait() == (experiment_id, False)
    again.close()
    assert ray_session.is_initialized()


def test_a_resumed_search_sets_up_no_experiment(ray_session, tracking_uri: str) -> None:
    services = SearchServices(tracking_uri, None, None)
    assert services.wait() == (None, False)
    services.close()


def test_a_tracking_error_is_raised_in_the_caller(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"nosuchscheme://{tmp_path}"  # MLflow has no store for this scheme
    services = SearchServices(uri, "startup", None)
    with pytest.raises(TrackingError, match="startup"):
        services.wait()
    services.close()
    assert ray_session.is_initialized()  # a Ray it did not start is left running


@pytest.mark.slow
def test_ray_started_in_the_background_outlives_its_start_and_shuts_down(
    tmp_path: Path,
) -> None:
    """In a fresh process (the session's Ray would be reused here).

    Ray's processes die with the thread that started them; RayStartup keeps that
    thread until release, so tasks still run after ``wait`` returned and the caller
    went on (when a thread that had just called ``ray.init`` ended, Ray's GCS died with
    it: every call hung, then the driver aborted). Release shuts Ray down.
    """
    script = textwrap.dedent(
        """
        import os, time
        import ray
        from kdforge.cluster.ray_init import RayStartup

        startup = RayStartup(None, num_cpus=1)
        assert startup.wait() is True
        time.sleep(1.0)  # the starting thread would have ended long ago

        @ray.remote
        def pid():
            return os.getpid()

        assert ray.get(pid.remote(), timeout=60) != os.getpid()
        startup.release()
        startup.close()
        assert not ray.is_initialized()
        print("ok")
        """
    )
    env_script = tmp_path / "startup.py"
    env_script.write_text(script)
    done = subprocess.run(
        [sys.executable, str(env_script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok" in done.stdout


def _closed_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_cluster_address_fails_at_once() -> None:
    import time

    from kdforge.cluster.ray_init import check_ray_address
    from kdforge.errors import SearchError

    port = _closed_port()
    started = time.perf_counter()
    with pytest.raises(
        SearchError, match=rf"cannot connect to the Ray cluster at 127\.0\.0\.1:{port}"
    ):
        check_ray_address(f"127.0.0.1:{port}")
    assert time.perf_counter() - started < 5  # ray.init itself waits minutes
    for left_to_ray in (None, "auto", "ray://head:10001"):
        check_ray_address(left_to_ray)


def test_search_with_an_unreachable_address_is_one_line_before_any_work(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    import yaml

    from tests.conftest import tiny_search_config

    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(tiny_search_config(digits_teacher_path, tmp_path)))
    port = _closed_port()
    done = subprocess.run(
        [sys.executable, "-m", "kdforge", "search", str(config), "--address", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines()[0] == (
        f"error: cannot connect to the Ray cluster at 127.0.0.1:{port}: Connection refused"
    )
    assert "Traceback" not in done.stderr
    assert "teacher" not in done.stdout  # stopped before loading data or the teacher
