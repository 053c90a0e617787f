"""Checks of a tracking store before any work: a SQLite file, or a server's credentials.

:func:`kdforge.tracking.store.check_tracking_uri` calls these first, so a search, a
teacher training or a promotion fails in one line before it trains anything:

* a SQLite store in a folder that does not exist gets the folder, and a line saying
  so (a typo in the path would otherwise start a new, empty store unnoticed);
* a SQLite file that is not a database, or a database that is not an MLflow store,
  is an error with a hint, not MLflow's raw SQL error after the teacher step;
* an MLflow server that answers 401/403 (its ``basic-auth`` app) names the
  credentials kdforge sent: ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
  (or ``MLFLOW_TRACKING_TOKEN``), the variables MLflow's client reads too.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kdforge.errors import TrackingError

__all__ = ["auth_headers", "check_server_credentials", "check_sqlite_store"]

# Tables every MLflow SQL store has (MLflow 2 and 3).
_MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}


def check_sqlite_store(db: Path, uri: str, emit: Callable[[str], None] | None = None) -> None:
    """Refuse a SQLite store that is not an MLflow store; make a missing folder, and say so.

    Args:
        db: The store's file.
        uri: Its tracking URI (for messages).
        emit: Where the line saying a folder was created goes (None: nowhere).

    Raises:
        TrackingError: the folder cannot be created, or the file is corrupt or foreign.
    """
    folder = db.parent
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise TrackingError(
                f"cannot create the tracking store folder {folder} (from {uri}): "
                f"{exc.strerror or exc}",
                hint="fix tracking.uri / --tracking-uri, or create the folder",
            ) from None
        # Said, not silent: a typo in the path shows up as a folder nobody expected.
        if emit is not None:
            emit(f"tracking: created folder {folder} for a new MLflow store ({uri})")
    if not db.is_file() or db.stat().st_size == 0:
        return  # a new store: MLflow creates its tables
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError(str(verdict))
    except sqlite3.DatabaseError as exc:
        raise TrackingError(
            f"tracking store {db} is not a readable SQLite database ({exc})",
            hint="restore it from a backup, or point tracking.uri / --tracking-uri at "
            "another file (a new file starts an empty store)",
        ) from None
    finally:
        connection.close()
    if tables and not tables >= _MLFLOW_TABLES:
        raise TrackingError(
            f"tracking store {db} is a SQLite database but not an MLflow store "
            f"(no {', '.join(sorted(_MLFLOW_TABLES - tables))} table)",
            hint="point tracking.uri / --tracking-uri at an MLflow store or a new file",
        )


def auth_headers() -> dict[str, str]:
    """The HTTP auth header MLflow's client would send, from the environment."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


def check_server_credentials(uri: str, timeout_s: float = 5.0) -> None:
    """One authenticated call (search one experiment) with the environment's credentials.

    ``/health`` answers without credentials even with authentication on, so the check
    asks for something that needs them.

    Raises:
        TrackingError: 401 (no or wrong credentials) or 403 (not allowed).
    """
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(url, headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):
            return  # other answers are MLflow's to report
        sent = "with" if auth_headers() else "without"
        what = "refused the credentials" if exc.code == 401 else "forbids this user"
        raise TrackingError(
            f"MLflow server {uri} {what} (HTTP {exc.code}); kdforge sent the request "
            f"{sent} credentials",
            hint="set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            "MLFLOW_TRACKING_TOKEN) to an account of the server",
        ) from None
    except (urllib.error.URLError, OSError):
        return  # unreachable servers are reported by the /health check
