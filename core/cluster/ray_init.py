"""Connecting to Ray (or starting a local instance), the same way for every command.

:class:`RayStartup` starts Ray in a thread of its own, so a search loads its data and
teacher outputs (and sets up MLflow) while Ray's processes come up, and shuts Ray down
in the background once the search no longer needs it.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from kdforge.errors import KDForgeError, SearchError

# Ray is imported inside the functions that start or join it: the address check and
# the commands that never start Ray (plugins, report, serve without --ray) skip it.

__all__ = ["RayStartup", "check_ray_address", "init_ray"]


def check_ray_address(address: str | None, error: type[KDForgeError] = SearchError) -> None:
    """Fail fast when nothing listens at a ``host:port`` Ray address.

    ``ray.init`` waits minutes for a cluster that is not there (retrying and printing
    warnings); one TCP connection attempt answers in at most 3 seconds. ``auto``,
    ``ray://`` client addresses and None (a local Ray) are left to ``ray.init``.

    Raises:
        KDForgeError: of class ``error``, naming the address and the reason.
    """
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3.0):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(
            f"cannot connect to the Ray cluster at {address}: {reason}",
            hint="start it (`ray start --head` prints its address) or fix search.address / "
            "--address; leave both out to start a local Ray",
        ) from None


def init_ray(
    address: str | None,
    num_cpus: int | None = None,
    *,
    log_to_driver: bool = False,
    error: type[KDForgeError] = SearchError,
) -> bool:
    """Join the Ray cluster at ``address``, or start a local Ray (no dashboard).

    Args:
        address: Cluster address (``host:port`` or ``auto``); None starts a local Ray.
        num_cpus: CPUs of a local Ray (default: all).
        log_to_driver: Forward worker output to this process.
        error: The kdforge error raised when the cluster cannot be reached.

    Returns:
        True when this call started (or joined) Ray, False when it was already running.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": log_to_driver,
        "logging_level": "ERROR",
        "configure_logging": True,
    }
    if address:
        check_ray_address(address, error)
        kwargs["address"] = address
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise error(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return True


class RayStartup:
    """:func:`init_ray` in a background thread that lives as long as the Ray it started.

    A local ``ray.init`` takes seconds, most of them spent waiting for the processes it
    starts; the caller works meanwhile and calls :meth:`wait` when it needs Ray. Ray
    ties those processes to the *thread* that started them (Linux delivers the parent
    death signal when that thread ends), so the thread stays until :meth:`release`,
    then shuts Ray down itself; :meth:`close` waits for that.

    Args:
        address: Cluster address, or None for a local Ray.
        num_cpus: CPUs of a local Ray (default: all).
        log_to_driver: Forward worker output to this process.
        error: The kdforge error raised when the cluster cannot be reached.
    """

    def __init__(
        self,
        address: str | None,
        num_cpus: int | None = None,
        *,
        log_to_driver: bool = False,
        error: type[KDForgeError] = SearchError,
    ) -> None:
        self._args = (address, num_cpus)
        self._kwargs: dict[str, Any] = {"log_to_driver": log_to_driver, "error": error}
        self._ready = threading.Event()
        self._released = threading.Event()
        self._started = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kdforge-ray", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._started = init_ray(*self._args, **self._kwargs)
        except BaseException as exc:  # re-raised by wait() in the caller's thread
            self._error = exc
        finally:
            self._ready.set()
        if self._started:
            self._released.wait()
            import ray

            ray.shutdown()

    def wait(self) -> bool:
        """Block until Ray is up; True when this object started (or joined) it.

        Raises:
            KDForgeError: the cluster at ``address`` cannot be reached (or whatever
                ``ray.init`` raised).
        """
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._started

    def release(self) -> None:
        """Start shutting down the Ray this object started; returns at once."""
        self._released.set()

    def close(self) -> None:
        """Shut down the Ray this object started (if any) and wait until it is down."""
        self._released.set()
        self._thread.join()
