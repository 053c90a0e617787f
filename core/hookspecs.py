"""Every kdforge hook, in one file.

A plugin is a module (or object) with functions decorated by ``kdforge.hookimpl``
whose names match the specs below. Built-in plugins use exactly these hooks; a
third-party package exposes its module under the entry-point group ``kdforge``::

    [project.entry-points.kdforge]
    my_loss = "kdforge_my_loss"

All registration hooks use the callback style: the host passes ``register`` and the
plugin calls ``register(name, cls)`` once per thing it provides. They are called once
per process, lazily, the first time kdforge needs its plugin registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["HOOK_KINDS", "Register", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("kdforge")
hookimpl = pluggy.HookimplMarker("kdforge")

#: Register callback passed to every ``register_*`` hook: ``register(name, cls)``.
Register = Callable[[str, Any], None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset plugins.

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.DatasetPlugin` for each
    dataset the plugin provides. Returns nothing.
    """


@hookspec
def register_teachers(register: Register) -> None:
    """Register teacher kinds.

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.Teacher`. Returns nothing.
    """


@hookspec
def register_search_spaces(register: Register) -> None:
    """Register student search spaces.

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.SearchSpace`. Returns
    nothing.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register distillation loss strategies.

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.LossStrategy`. Returns
    nothing.
    """


@hookspec
def register_exporters(register: Register) -> None:
    """Register exporters of trained students (e.g. ONNX).

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.Exporter`. Returns
    nothing.
    """


#: Plugin kind -> (hook name, required base class name).
HOOK_KINDS: dict[str, str] = {
    "dataset": "register_datasets",
    "teacher": "register_teachers",
    "search_space": "register_search_spaces",
    "loss": "register_losses",
    "exporter": "register_exporters",
}
