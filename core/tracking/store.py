"""MLflow tracking: the store, the parent run of a search, nested trial runs.

All logging happens in the driver (a Ray Tune callback for trials), so trials on any
node of a cluster reach MLflow without needing network access to the tracking server.
The default store is ``sqlite:///mlflow.db`` in the working directory.
"""

from __future__ import annotations

import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kdforge.errors import TrackingError

__all__ = [
    "DEFAULT_TRACKING_URI",
    "check_tracking_uri",
    "flatten_params",
    "resolve_tracking_uri",
    "setup_experiment",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# MLflow retries a failed HTTP call 7 times with exponential backoff (minutes in all);
# a search would hang that long on a dead server before keeping results locally.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI to use: the given one or the local SQLite default.

    A relative SQLite path is made absolute against the current directory, so every
    process (and a later ``kdforge resume``) writes to the same file.
    """
    chosen = uri or DEFAULT_TRACKING_URI
    if chosen.startswith("sqlite:///") and not chosen.startswith("sqlite:////"):
        relative = chosen[len("sqlite:///") :]
        chosen = "sqlite:///" + str(Path(relative).resolve())
    return chosen


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before any training, when the tracking store cannot be used.

    Raises:
        TrackingError: an HTTP server that does not answer, or a SQLite/file location
            that cannot be written.
    """
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
        return
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        folder = db.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(
                f"cannot create the tracking store folder {folder} (from {uri}): {exc}"
            ) from None
        if db.exists() and db.is_dir():
            raise TrackingError(f"tracking store {db} is a directory, expected a SQLite file")
        probe = folder / f".kdforge-write-probe-{time.time_ns()}"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise TrackingError(f"cannot write the tracking store folder {folder}: {exc}") from None


def setup_experiment(uri: str, experiment: str) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment`` (created if needed)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
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
