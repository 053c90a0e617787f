"""MLflow tracking: the store, and logging to the active run.

Every MLflow call of kdforge is in :mod:`kdforge.tracking`; the other packages log
through the small functions here (tags, params, numeric metrics, files) or through the
modules beside it (the parent and trial runs, the journal, the registry). All logging
happens in the driver (a Ray Tune callback for trials), so trials on any node of a
cluster reach MLflow without needing network access to the tracking server. The
default store is ``sqlite:///mlflow.db`` in the working directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kdforge.errors import TrackingError
from kdforge.tracking.store_checks import check_server_credentials, check_sqlite_store

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent starts are not guarded there
    fcntl = None  # type: ignore[assignment]
from kdforge.tracking.sqlite_template import copy_schema_template

# MLflow (~1.5 s to import) is imported inside the functions that log: a search then
# imports it in the background while its data loads (kdforge.search.services).

__all__ = [
    "HTTP_RETRY_DEFAULTS",
    "cap_http_retries",
    "check_tracking_uri",
    "finite_metrics",
    "flatten_params",
    "has_active_run",
    "log_files",
    "log_folder",
    "log_numeric_metrics",
    "log_params",
    "log_tags",
    "open_run",
    "schema_lock",
    "setup_experiment",
    "use_tracking_uri",
]

#: MLflow's HTTP retry settings kdforge uses unless the environment sets them: MLflow
#: retries a failed call 7 times with exponential backoff (minutes in all), and a search
#: would hang that long on a dead server before keeping its results locally.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def cap_http_retries() -> None:
    """Set :data:`HTTP_RETRY_DEFAULTS` where the environment does not set them already."""
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def check_tracking_uri(
    uri: str, timeout_s: float = 5.0, emit: Callable[[str], None] | None = None
) -> None:
    """Fail fast, before any training, when the tracking store cannot be used.

    Every command that tracks calls this first, so it also caps MLflow's HTTP retries
    (:func:`cap_http_retries`) for the rest of the process.

    Raises:
        TrackingError: an HTTP server that does not answer or refuses the credentials
            (:mod:`kdforge.tracking.store_checks`), or a SQLite store whose folder cannot
            be made, a corrupt one, or a location that cannot be written.
    """
    cap_http_retries()
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                if response.status >= 400:
                    raise TrackingError(
                        f"MLflow server {uri} answered {response.status} on /health"
                    )
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise TrackingError(
                f"MLflow tracking server {uri} does not answer ({exc})",
                hint="start it (mlflow server ...) or drop --tracking-uri to use local SQLite",
            ) from None
        check_server_credentials(uri, timeout_s)
        return
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        folder = db.parent
        if db.exists() and db.is_dir():
            raise TrackingError(f"tracking store {db} is a directory, expected a SQLite file")
        check_sqlite_store(db, uri, emit)
        probe = folder / f".kdforge-write-probe-{time.time_ns()}"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise TrackingError(f"cannot write the tracking store folder {folder}: {exc}") from None


@contextlib.contextmanager
def schema_lock(uri: str) -> Iterator[None]:
    """Hold a file lock beside a SQLite store (``DB.kdforge-lock``); other URIs: no lock.

    MLflow creates (and migrates) a SQLite store's schema on the first connection of a
    process and an experiment on first use; two searches starting together on a new
    file would both try, and one fails inside MLflow. Under this lock the second waits
    and then finds the schema and the experiment made.
    """
    if not uri.startswith("sqlite:///") or fcntl is None:
        yield
        return
    lock = Path(uri[len("sqlite:///") :] + ".kdforge-lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _create_schema(uri: str) -> None:
    """A new SQLite store gets its schema from a template made once, not from migrations.

    The one place a search creates a store's schema (:mod:`kdforge.tracking.sqlite_template`).
    """
    copy_schema_template(uri)


def setup_experiment(uri: str, experiment: str) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment`` (created if needed)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        # The first call on a new SQLite file creates MLflow's schema: one process at a time.
        with schema_lock(uri):
            _create_schema(uri)
            found = mlflow.get_experiment_by_name(experiment)
            if found is not None:
                return str(found.experiment_id)
            return str(mlflow.create_experiment(experiment))
    except Exception as exc:
        raise TrackingError(
            f"cannot use MLflow experiment {experiment!r} at {uri}: {exc}"
        ) from None


def flatten_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to ``a.b.c`` keys (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def finite_metrics(values: dict[str, Any]) -> dict[str, float]:
    """Keep the numeric, finite entries (MLflow rejects NaN on some stores)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def use_tracking_uri(uri: str) -> None:
    """Point MLflow's fluent API (the active run's logging) at ``uri``."""
    import mlflow

    mlflow.set_tracking_uri(uri)


@contextlib.contextmanager
def registry_at(uri: str | None = None) -> Iterator[None]:
    """MLflow's model registry at ``uri`` (default: the tracking URI) inside the block.

    ``mlflow.set_registry_uri`` pins a process-wide URI and exports it to child
    processes (``MLFLOW_REGISTRY_URI``); left set, a later registration, a user's
    ``MlflowClient(url)`` or a served model would use the wrong store. Afterwards the
    registry follows the tracking URI again (or the URI set before, if any).
    """
    import mlflow

    before = os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_registry_uri(uri or mlflow.get_tracking_uri())
    try:
        yield
    finally:
        if before:
            mlflow.set_registry_uri(before)
        else:
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]  # None: follow tracking
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


@contextlib.contextmanager
def open_run(
    run_name: str, *, experiment_id: str | None = None, nested: bool = False
) -> Iterator[str]:
    """Start a run (nested under the active run with ``nested``); yield its id; end it.

    Args:
        run_name: The run's name.
        experiment_id: Its experiment (default: MLflow's current one).
        nested: Nest it under the active run.
    """
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested) as run:
        yield str(run.info.run_id)


def has_active_run() -> bool:
    """Whether a run is active in this process (a search's parent run, say)."""
    import mlflow

    return mlflow.active_run() is not None


def log_tags(tags: Mapping[str, str]) -> None:
    """Set tags on the active run."""
    import mlflow

    mlflow.set_tags(dict(tags))


def log_params(params: Mapping[str, Any]) -> None:
    """Log params on the active run (values as strings, cut to MLflow's 500 characters)."""
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})


def log_numeric_metrics(values: Mapping[str, Any]) -> None:
    """Log the numeric entries of ``values`` (not booleans, not None) to the active run."""
    import mlflow

    numeric = {k: v for k, v in values.items() if isinstance(v, int | float)}
    mlflow.log_metrics({k: float(v) for k, v in numeric.items() if not isinstance(v, bool)})


def log_files(*paths: str | Path) -> None:
    """Log files as artifacts of the active run (at its artifact root)."""
    import mlflow

    for path in paths:
        mlflow.log_artifact(str(path))


def log_folder(folder: str | Path, under: str) -> None:
    """Log every file of ``folder`` as artifacts of the active run, under ``under/``."""
    import mlflow

    mlflow.log_artifacts(str(folder), artifact_path=under)
