"""The kdforge error family.

Every error a user can cause (bad config, bad data, a missing file, an unreachable
service, a broken plugin) is raised as a subclass of :class:`KDForgeError`. The CLI
prints ``str(error)`` and the optional ``hint`` as one line each and exits non-zero,
without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExportError",
    "KDForgeError",
    "PluginError",
    "SearchError",
    "TrackingError",
    "closest_match",
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


def closest_match(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice closest to ``name`` (for "did you mean" hints), or None."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
