"""A new SQLite tracking store starts as a copy of an empty, migrated one.

MLflow creates a new SQLite store by running its whole chain of schema migrations
(1-6 s on a busy 2-core machine, on the critical path of a quick search). The result
does not depend on the store, only on the MLflow version, so kdforge makes it once per
MLflow version, keeps it in the user cache folder (``$KDFORGE_CACHE_DIR``, else
``$XDG_CACHE_HOME/kdforge``, else ``~/.cache/kdforge``) and copies it for every new
store (``benchmarks/search_overhead.py`` measures both). The template holds no
experiment: MLflow adds its ``Default`` experiment itself when it first opens the copy,
with the artifact location it would have given a store it created. Anything that goes
wrong here leaves the store to MLflow, as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

# MLflow is imported inside the function that builds the template (see store.py).

__all__ = ["copy_schema_template", "user_cache_dir"]


def user_cache_dir() -> Path:
    """kdforge's per-user cache folder (not created here)."""
    if os.environ.get("KDFORGE_CACHE_DIR"):
        return Path(os.environ["KDFORGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kdforge"


def _template_path() -> Path:
    import mlflow

    return user_cache_dir() / f"mlflow-{mlflow.__version__}-empty-store.db"


def _build_template(template: Path) -> None:
    """Let MLflow create and migrate a store, empty it of experiments, move it in place."""
    from mlflow.tracking import MlflowClient

    template.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".building-", suffix=".db", dir=template.parent)
    os.close(fd)
    os.unlink(name)  # MLflow must create the file itself
    try:
        client = MlflowClient(f"sqlite:///{name}")
        client.search_experiments()  # opening the store runs the migrations
        store = client._tracking_client.store  # the SqlAlchemy engine holds the file open
        with contextlib.suppress(AttributeError):
            store.engine.dispose()
        with contextlib.closing(sqlite3.connect(name)) as db:
            db.execute("DELETE FROM experiment_tags")
            db.execute("DELETE FROM experiments")
            db.commit()
        os.replace(name, template)  # atomic: a concurrent builder's copy is as good
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def copy_schema_template(uri: str) -> bool:
    """Give a SQLite store that does not exist yet a migrated, empty schema.

    Args:
        uri: The tracking URI; anything but a ``sqlite:///`` file that does not exist
            yet is left alone.

    Returns:
        True when the store was created from the template.
    """
    if not uri.startswith("sqlite:///"):
        return False
    db = Path(uri[len("sqlite:///") :])
    if db.exists():
        return False
    try:
        template = _template_path()
        if not template.is_file():
            _build_template(template)
        fd, name = tempfile.mkstemp(prefix=f".{db.name}-", dir=db.parent)
        os.close(fd)
        try:
            shutil.copyfile(template, name)
            os.link(name, db)  # atomic, and never replaces a store made meanwhile
        finally:
            os.unlink(name)
    except Exception:  # left to MLflow, which creates the schema itself
        return False
    return True
