"""Ray and the MLflow experiment of a search, started in the background.

Both take seconds and mostly wait (Ray for the processes it starts, a new SQLite store
for MLflow's schema migrations, and MLflow's own import), so a search starts them
first and loads its data and teacher outputs meanwhile;
``benchmarks/search_overhead.py`` measures it.
"""

from __future__ import annotations

import threading
from typing import Any

from kdforge.cluster.ray_init import RayStartup
from kdforge.tracking.store import setup_experiment, use_tracking_uri

__all__ = ["SearchServices"]


class SearchServices:
    """Ray and the MLflow experiment of a search, started in the background.

    Both take seconds and mostly wait (Ray for the processes it starts, a new SQLite
    store for MLflow's schema migrations), so a search starts them first and loads its
    data and teacher outputs meanwhile; ``benchmarks/search_overhead.py`` measures it.

    Args:
        tracking_uri: The MLflow tracking URI.
        experiment: The experiment to set up (created if needed); None sets none up
            (a resumed search knows its experiment).
        address: Ray cluster address, or None for a local Ray.
        num_cpus: CPUs of a local Ray (default: all).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str | None,
        address: str | None,
        num_cpus: int | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self._outcome: dict[str, Any] = {}
        self._tracking: threading.Thread | None = None
        if experiment is not None:
            self._tracking = threading.Thread(
                target=self._setup, args=(experiment,), name="kdforge-mlflow-setup", daemon=True
            )
            self._tracking.start()
        self.ray = RayStartup(address, num_cpus)

    def _setup(self, experiment: str) -> None:
        try:
            self._outcome["id"] = setup_experiment(self.tracking_uri, experiment)
        except BaseException as exc:  # re-raised by wait() in the caller's thread
            self._outcome["error"] = exc

    def wait(self) -> tuple[str | None, bool]:
        """Wait for both; return ``(experiment id or None, whether Ray was started)``.

        Raises:
            TrackingError: the experiment cannot be used at the tracking URI.
            SearchError: the Ray cluster cannot be reached.
        """
        if self._tracking is not None:
            self._tracking.join()
        started = self.ray.wait()
        if "error" in self._outcome:
            raise self._outcome["error"]
        use_tracking_uri(self.tracking_uri)
        return self._outcome.get("id"), started

    def release(self) -> None:
        """Start shutting down a Ray these services started; returns at once."""
        self.ray.release()

    def close(self) -> None:
        """Shut down a Ray these services started and wait for the experiment setup."""
        if self._tracking is not None:
            self._tracking.join()
        self.ray.close()
