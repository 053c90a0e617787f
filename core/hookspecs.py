"""Every kdforge hook, in one file.

A plugin is a module (or object) with functions decorated by ``kdforge.hookimpl``
whose names match the specs below. Built-in plugins use exactly these hooks; a
third-party package exposes its module under the entry-point group ``kdforge``::

    [project.entry-points.kdforge]
    my_loss = "kdforge_my_loss"

All registration hooks use the callback style: the host passes ``register`` and the
plugin calls ``register(name, cls)`` once per thing it provides. ``name`` is what
configs use (letters, digits, ``_``, ``-``, ``.``); ``cls`` is a concrete subclass of
the kind's base class in :mod:`kdforge.interfaces`, constructed later as
``cls(params)`` with its validated ``Params``.

When they are called: once per process, lazily, the first time kdforge needs its
plugin registry (``kdforge.get_registry()``: resolving a config, ``kdforge plugins``,
rebuilding a checkpoint). Importing ``kdforge`` calls nothing. The built-in plugins
are registered first, then installed entry points in discovery order (limited by
``KDFORGE_PLUGINS``; skipped with ``KDFORGE_DISABLE_PLUGIN_AUTOLOAD=1``). A hook that
raises, or registers something invalid, disables that plugin only (a warning names it).

Each spec has a section in ``docs/plugins.md`` and a test that exercises it; a
meta-test (``tests/test_docs_hookspecs.py``) fails when either is missing.
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
    dataset the plugin provides. The host later creates ``cls(params)`` in the search
    driver and calls ``load(seed)`` once per search or teacher training. Returns
    nothing.

    Example::

        @kdforge.hookimpl
        def register_datasets(register):
            register("blobs", Blobs)
    """


@hookspec
def register_teachers(register: Register) -> None:
    """Register teacher kinds.

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.Teacher`. The host later
    creates ``cls(params)`` and calls ``load()`` once in the driver, then ``predict``
    on batches (outputs are computed once per search and cached). Returns nothing.
    """


@hookspec
def register_search_spaces(register: Register) -> None:
    """Register student search spaces.

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.SearchSpace`. The host
    calls ``suggest(trial, info)`` in the driver for every new trial and
    ``build(arch, info)`` inside the trial (and again to rebuild checkpoints). Returns
    nothing.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register distillation loss strategies.

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.LossStrategy`; its
    ``hyperparameters`` join the search space as ``loss/<name>``. Inside each trial the
    host creates ``cls(params, hparams)`` and calls it on every batch. Returns nothing.
    """


@hookspec
def register_exporters(register: Register) -> None:
    """Register exporters of trained students (e.g. ONNX).

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.Exporter`. After the
    search the host creates ``cls(params)`` and calls ``export(model, example, path)``
    once, on the CPU. Returns nothing.
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks (what models predict and how it is scored).

    Called once per process when the registry is first built. Call
    ``register(name, cls)`` with a subclass of :class:`kdforge.Task`. The host creates
    ``cls(params)`` from the config's ``task`` section in the driver, checks and prepares
    the splits with it, and rebuilds it from its ``state()`` in every trial. Returns
    nothing.

    Example::

        @kdforge.hookimpl
        def register_tasks(register):
            register("ordinal", Ordinal)
    """


#: Plugin kind -> name of the hook that registers plugins of that kind.
HOOK_KINDS: dict[str, str] = {
    "dataset": "register_datasets",
    "teacher": "register_teachers",
    "search_space": "register_search_spaces",
    "loss": "register_losses",
    "exporter": "register_exporters",
    "task": "register_tasks",
}
