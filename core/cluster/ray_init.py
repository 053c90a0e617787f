"""Connecting to Ray (or starting a local instance), the same way for every command.

:class:`RayStartup` starts Ray in a thread of its own, so a search loads its data and
teacher outputs (and sets up MLflow) while Ray's processes come up, and shuts Ray down
in the background once the search no longer needs it.

A local Ray takes ~5 s to start on a small machine, the largest part of a quick
search's fixed cost. ``kdforge ray start`` (:func:`start_shared_ray`) starts one that
stays up and writes its address to the user cache folder; every later command that
would start a local Ray joins it instead (:func:`shared_ray_address`), until ``kdforge
ray stop``. Without it, each search starts and stops its own Ray, as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kdforge.errors import KDForgeError, SearchError

# Ray is imported inside the functions that start or join it: the address check and
# the commands that never start Ray (plugins, report, serve without --ray) skip it.

__all__ = [
    "RayStartup",
    "check_ray_address",
    "init_ray",
    "shared_ray_address",
    "start_shared_ray",
    "stop_shared_ray",
]

#: Port of the Ray that ``kdforge ray start`` starts (Ray's default is 6379).
SHARED_RAY_PORT = 6390


def _address_file() -> Path:
    """Where ``kdforge ray start`` writes its Ray's address (kdforge's user cache folder,
    the same as kdforge.tracking.sqlite_template's)."""
    if os.environ.get("KDFORGE_CACHE_DIR"):
        base = Path(os.environ["KDFORGE_CACHE_DIR"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kdforge"
    return base / "ray-address"


def _answers(address: str, timeout_s: float) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _recorded() -> tuple[str, str, str] | None:
    """(address, Ray temp folder, auth mode) written by ``kdforge ray start``, if any."""
    try:
        address, temp_dir, *mode = _address_file().read_text().split()
    except (OSError, ValueError):
        return None
    return (address, temp_dir, mode[0] if mode else "") if address else None


def _auth_mode() -> str:
    """The token-auth mode ``ray start`` will use in this environment, decided as Ray
    decides it: ``RAY_AUTH_MODE`` when set, else ``token`` when a token exists."""
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    if mode:
        return mode
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"))
    has_token = has_token or (Path.home() / ".ray" / "auth_token").is_file()
    return "token" if has_token else "disabled"


def _use_auth_mode_of_shared_ray() -> None:
    """Send the shared Ray's token when it wants one.

    ``ray start`` turns token authentication on by itself when a token exists, but a
    client given an explicit address does not, and its requests are refused; the mode
    recorded at start tells this process (and the Ray workers it starts) to send it.
    """
    recorded = _recorded()
    if recorded and recorded[2] and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = recorded[2]
        # Ray reads its settings once, when first imported; re-read them as Ray itself
        # does when it turns token auth on (ray._private.authentication).
        with contextlib.suppress(ImportError, AttributeError):
            from ray._raylet import Config  # type: ignore[attr-defined]

            Config.initialize("")


def shared_ray_address() -> str | None:
    """The address of the Ray ``kdforge ray start`` started, if it is up; else None."""
    recorded = _recorded()
    return recorded[0] if recorded and _answers(recorded[0], 0.5) else None


def start_shared_ray(num_cpus: int | None = None, port: int = SHARED_RAY_PORT) -> str:
    """Start a local Ray that later kdforge commands join; return its address.

    It runs without the dashboard (its node address is 127.0.0.1), keeps its files in a
    temp folder of its own (so :func:`stop_shared_ray` stops it and no other Ray of
    this user) and keeps running after this process exits.

    Raises:
        SearchError: ``ray start`` failed (its output is in the message).
    """
    running = shared_ray_address()
    if running:
        return running
    temp_dir = f"/tmp/kdforge-ray-{os.getuid()}-{port}"  # short: Ray's socket paths
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head"]
    command += [f"--port={port}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}"]
    command += ["--include-dashboard=false", "--disable-usage-stats"]
    if num_cpus:
        command.append(f"--num-cpus={num_cpus}")
    mode = _auth_mode()
    env = {**os.environ, "RAY_AUTH_MODE": mode}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SearchError(
            f"`ray start` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}",
            hint=f"is port {port} taken? `kdforge ray start --port N` picks another",
        )
    address = f"127.0.0.1:{port}"
    file = _address_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"{address} {temp_dir} {mode}\n")
    return address


def _processes_of(address: str, temp_dir: str) -> list[int]:
    """Ids of this user's processes of the Ray at ``address`` and their children (Linux)."""
    mine, parents = [], {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(stat[1])
        except (OSError, ValueError, IndexError):
            continue
        if (temp_dir and temp_dir in cmdline) or f"--address={address}" in cmdline:
            mine.append(int(entry.name))
    found = set(mine)
    for pid, parent in parents.items():  # Ray's agents carry neither in their command line
        if parent in found:
            found.add(pid)
    return sorted(found)


def stop_shared_ray(grace_s: float = 5.0) -> bool:
    """Stop the Ray ``kdforge ray start`` started; False when none was recorded.

    Its processes get SIGTERM, then SIGKILL after ``grace_s`` (as ``ray stop`` does,
    but only this Ray's: ``ray stop`` stops every Ray of the user on the machine).
    """
    recorded = _recorded()
    if recorded is None:
        return False
    _address_file().unlink()
    pids = _processes_of(recorded[0], recorded[1])
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


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

    Without an address, a Ray started by ``kdforge ray start`` is joined when it is up
    (:func:`shared_ray_address`); otherwise a local Ray starts.

    Args:
        address: Cluster address (``host:port`` or ``auto``); None joins the shared
            local Ray or starts one.
        num_cpus: CPUs of a local Ray (default: all).
        log_to_driver: Forward worker output to this process.
        error: The kdforge error raised when the cluster cannot be reached.

    Returns:
        True when this call started (or joined) Ray, False when it was already running.
    """
    import ray

    if ray.is_initialized():
        return False
    if not address:
        address = shared_ray_address()
        if address:
            _use_auth_mode_of_shared_ray()
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
