"""Connecting to Ray (or starting a local instance), the same way for every command."""

from __future__ import annotations

from typing import Any

from kdforge.errors import KDForgeError, SearchError

__all__ = ["init_ray"]


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
        kwargs["address"] = address
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise error(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return True
