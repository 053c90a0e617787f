"""The kdforge error family.

Every error a user can cause (bad config, bad data, a missing file, an unreachable
service, a broken plugin) is raised as a subclass of :class:`KDForgeError`. The CLI
prints ``str(error)`` and the optional ``hint`` as one line each and exits non-zero,
without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DiskFullError",
    "ExportError",
    "KDForgeError",
    "PluginError",
    "SearchError",
    "TrackingError",
    "closest_match",
    "disk_full_error",
    "first_line",
]


class KDForgeError(Exception):
    """Base class of every error kdforge raises on purpose.

    Args:
        message: What is wrong and where (config key, plugin name, file).
        hint: How to fix it; printed on its own line by the CLI.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(KDForgeError):
    """The configuration file or a command-line option is invalid."""


class PluginError(KDForgeError):
    """A plugin is unknown, failed to load, or registered a clashing name."""


class DataError(KDForgeError):
    """The dataset is unusable or does not fit the teacher."""


class CheckpointError(KDForgeError):
    """A checkpoint file is missing, corrupt, or unsafe to load."""


class TrackingError(KDForgeError):
    """The MLflow tracking store or model registry cannot be used."""


class ExportError(KDForgeError):
    """Exporting the student failed, or the exported model disagrees with PyTorch."""


class SearchError(KDForgeError):
    """The search could not run or produced no usable student."""


class DiskFullError(KDForgeError):
    """A write failed because the disk (or the user's quota) is full."""


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def disk_full_error(exc: BaseException, where: str = "") -> DiskFullError | None:
    """A :class:`DiskFullError` when ``exc`` (or what caused it) is a full disk, else None.

    Follows ``__cause__``, ``__context__`` and Ray's ``cause``, and reads the text of
    errors that only carry the original as a message (a trial's error from a worker).

    Args:
        exc: The error raised.
        where: What was being written (e.g. the search folder), for the message.
    """
    stack: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        text = str(error)
        if (isinstance(error, OSError) and error.errno in _DISK_FULL) or any(
            marker in text for marker in _DISK_FULL_TEXT
        ):
            path = getattr(error, "filename", None) or where
            return DiskFullError(
                f"the disk is full: a write failed{f' under {path}' if path else ''} "
                f"({first_line(error)})",
                hint="free space on that disk (or move output_dir / the tracking store), then "
                "run the command again; a search continues with `kdforge resume SEARCH_DIR`",
            )
        stack.extend([error.__cause__, error.__context__, getattr(error, "cause", None)])
    return None


def closest_match(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice closest to ``name`` (for "did you mean" hints), or None."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
