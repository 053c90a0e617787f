"""Trial tracking that survives a lost MLflow server.

The driver logs trials through :class:`TrackingWriter`. While the server answers, calls
go straight to MLflow. After the first failed call the writer goes offline: every
further call is appended to ``tracking-journal.jsonl`` in the search folder, so no
trial result is lost; :func:`replay_journal` sends them once the server is back
(``kdforge resume`` does it first thing).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import warnings
from pathlib import Path
from typing import Any

# MLflow (~1.5 s to import) is imported inside the functions that log: a search then
# imports it in the background while its data loads (kdforge.search.services).

__all__ = ["JOURNAL_NAME", "TrackingWriter", "replay_journal"]

JOURNAL_NAME = "tracking-journal.jsonl"


class TrackingWriter:
    """MLflow client calls addressed by a local run key, journaled when offline.

    Args:
        tracking_uri: The MLflow tracking URI.
        journal: Path of the journal file (in the search folder).
        known_runs: Local key -> MLflow run id of runs that already exist (resume).
    """

    def __init__(
        self, tracking_uri: str, journal: Path, known_runs: dict[str, str] | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        self.journal = Path(journal)
        self.run_ids: dict[str, str] = dict(known_runs or {})
        self.offline = False
        self.error: str | None = None
        self._client: Any = None
        self._lock = threading.Lock()
        self._pending: queue.Queue[dict[str, Any]] | None = None
        self._drainer: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_lock"] = None
        state["_pending"] = None
        state["_drainer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pending = None
        self._drainer = None

    @property
    def client(self) -> Any:
        """The MLflow client (created lazily)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def create_run(self, key: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> None:
        """Create the run ``key`` (no-op when it already exists)."""
        if key in self.run_ids:
            return
        self._do("create_run", key=key, experiment_id=experiment_id, run_name=run_name, tags=tags)

    def log_batch(
        self,
        key: str,
        metrics: list[tuple[str, float, int, int]] | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        """Log metrics ``(name, value, timestamp_ms, step)`` and params to run ``key``."""
        self._do("log_batch", key=key, metrics=metrics or [], params=params or {})

    def log_metrics_later(self, key: str, metrics: list[tuple[str, float, int, int]]) -> None:
        """Log metrics to run ``key`` from a background thread, in call order.

        Ray Tune trials wait for the driver after every report, so a per-epoch MLflow
        call made there delays the trial; queued, it overlaps the next epoch. Every
        other call (and :meth:`flush`) first waits for the queued ones, so a run's
        metrics are written before its status tags and its end.
        """
        if self._pending is None:
            self._pending = queue.Queue()
            self._drainer = threading.Thread(
                target=self._drain, args=(self._pending,), name="kdforge-tracking", daemon=True
            )
            self._drainer.start()
        self._pending.put({"key": key, "metrics": metrics, "params": {}})

    def flush(self) -> None:
        """Wait until the metrics queued by :meth:`log_metrics_later` are written."""
        if self._pending is not None:
            self._pending.join()

    def _drain(self, pending: queue.Queue[dict[str, Any]]) -> None:
        while True:
            fields = pending.get()
            try:
                self._do("log_batch", **fields)
            except Exception as exc:  # e.g. an unwritable journal: keep draining
                warnings.warn(f"queued metrics not tracked: {exc}", RuntimeWarning, stacklevel=1)
            finally:
                pending.task_done()

    def set_tag(self, key: str, name: str, value: str) -> None:
        """Set a tag on run ``key``."""
        self._do("set_tag", key=key, name=name, value=value)

    def log_artifact(self, key: str, path: str) -> None:
        """Log the local file ``path`` as an artifact of run ``key``."""
        self._do("log_artifact", key=key, path=path)

    def set_terminated(self, key: str, status: str) -> None:
        """End run ``key`` with ``status`` (FINISHED, FAILED, KILLED)."""
        self._do("set_terminated", key=key, status=status)

    def _do(self, op: str, **fields: Any) -> None:
        if threading.current_thread() is not self._drainer:
            self.flush()  # queued metrics first: calls reach MLflow in call order
        with self._lock:
            if not self.offline:
                try:
                    _apply(self.client, self.run_ids, {"op": op, **fields})
                    return
                except Exception as exc:
                    self.offline = True
                    self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    warnings.warn(
                        f"MLflow tracking at {self.tracking_uri} failed ({self.error}); trial "
                        f"results are kept in {self.journal} and logged by `kdforge resume`",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            record = {"op": op, "time": time.time(), **fields}
            with open(self.journal, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def _apply(client: Any, run_ids: dict[str, str], record: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param

    op = record["op"]
    key = record["key"]
    if op == "create_run":
        if key not in run_ids:
            run = client.create_run(
                record["experiment_id"], run_name=record["run_name"], tags=record["tags"]
            )
            run_ids[key] = run.info.run_id
        return
    run_id = run_ids[key]
    if op == "log_batch":
        metrics = [Metric(n, float(v), int(ts), int(step)) for n, v, ts, step in record["metrics"]]
        params = [Param(k, str(v)) for k, v in record["params"].items()]
        if metrics or params:
            client.log_batch(run_id, metrics=metrics, params=params)
    elif op == "set_tag":
        client.set_tag(run_id, record["name"], record["value"])
    elif op == "log_artifact":
        client.log_artifact(run_id, record["path"])
    elif op == "set_terminated":
        client.set_terminated(run_id, record["status"])
    else:
        raise ValueError(f"unknown journal operation {op!r}")


def replay_journal(journal: Path, tracking_uri: str, run_ids: dict[str, str]) -> int:
    """Send every journaled call to MLflow, then remove the journal.

    Args:
        journal: The journal file (missing means nothing to do).
        tracking_uri: Where to send them.
        run_ids: Known local key -> run id; updated with the runs created.

    Returns:
        The number of calls replayed.
    """
    from mlflow.tracking import MlflowClient

    path = Path(journal)
    if not path.exists():
        return 0
    client = MlflowClient(tracking_uri)
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        _apply(client, run_ids, record)
    path.rename(path.with_suffix(".replayed"))
    return len(records)
