"""The plugin registry: built-ins plus entry-point plugins, built lazily once per process.

Nothing is imported or registered when ``kdforge`` is imported: the first call of
:func:`get_registry` imports the built-in plugin modules and every installed
distribution's entry points of group ``kdforge``, calls their ``register_*`` hooks
(see :mod:`kdforge.hookspecs`) and keeps the result for the rest of the process.

Environment switches (pytest's pattern), read when the registry is built:

* ``KDFORGE_DISABLE_PLUGIN_AUTOLOAD=1`` loads built-in plugins only;
* ``KDFORGE_PLUGINS=a,b`` loads only the third-party plugins named (entry-point
  name or distribution name); built-ins always load.

Failures never take other plugins down. A third-party plugin that fails to import,
raises while registering, or registers something invalid is reported as a
:class:`PluginWarning` naming its distribution, entry point and error; asking for a
name it would have provided raises a :class:`~kdforge.errors.PluginError` that says
why it is missing. Two third-party plugins registering the same name make that name
unusable: asking for it raises an error naming both sources. A built-in is never
displaced: a third-party plugin that registers a built-in's name (``hinton_kd``) is
refused for that name, with a :class:`PluginWarning` and a failure record (stage
``"clash"``) naming its distribution; the built-in keeps working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kdforge import hookspecs
from kdforge.errors import PluginError, closest_match
from kdforge.plugin_host.records import (
    BUILTIN_SOURCE,
    PLUGIN_BASES,
    PluginFailure,
    PluginRecord,
    PluginRegistry,
    PluginWarning,
    check_record,
    conflict_message,
    normalize_name,
)

__all__ = [
    "BUILTIN_MODULES",
    "BUILTIN_SOURCE",
    "ENTRY_POINT_GROUP",
    "PLUGIN_BASES",
    "PluginFailure",
    "PluginRecord",
    "PluginRegistry",
    "PluginWarning",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "kdforge"

BUILTIN_MODULES: tuple[str, ...] = (
    "kdforge.plugins.datasets.digits",
    "kdforge.plugins.datasets.image_folder",
    "kdforge.plugins.datasets.tabular",
    "kdforge.plugins.datasets.text",
    "kdforge.plugins.datasets.arrays",
    "kdforge.plugins.datasets.hf_disk",
    "kdforge.plugins.datasets.in_memory",
    "kdforge.plugins.datasets.text_corpus",
    "kdforge.plugins.teachers.checkpoint",
    "kdforge.plugins.teachers.ensemble",
    "kdforge.plugins.teachers.huggingface",
    "kdforge.plugins.teachers.mlflow_model",
    "kdforge.plugins.teachers.in_memory",
    "kdforge.plugins.losses.hinton_kd",
    "kdforge.plugins.losses.logit_mse",
    "kdforge.plugins.losses.fitnets",
    "kdforge.plugins.losses.attention_transfer",
    "kdforge.plugins.losses.rkd",
    "kdforge.plugins.losses.dkd",
    "kdforge.plugins.losses.cosine_embedding",
    "kdforge.plugins.losses.regression_kd",
    "kdforge.plugins.losses.multilabel_kd",
    "kdforge.plugins.losses.lm_kd",
    "kdforge.plugins.losses.lm_hidden_cosine",
    "kdforge.plugins.losses.composite",
    "kdforge.plugins.exporters.onnx",
    "kdforge.plugins.tasks.classification",
    "kdforge.plugins.tasks.multilabel",
    "kdforge.plugins.tasks.regression",
    "kdforge.plugins.tasks.token_classification",
    "kdforge.plugins.tasks.language_modeling",
    "kdforge.search_spaces.mlp",
    "kdforge.search_spaces.cnn",
    "kdforge.search_spaces.resnet",
    "kdforge.search_spaces.transformer",
    "kdforge.search_spaces.hf_lm",
    "kdforge.search_spaces.pruned",
    "kdforge.search_spaces.choice",
)

_FALSE_VALUES = ("", "0", "false", "no", "off")


_lock = threading.RLock()
_registry: PluginRegistry | None = None
_building = False


def get_registry() -> PluginRegistry:
    """Build (once per process, on first use) and return the plugin registry.

    Raises:
        PluginError: a built-in plugin is broken, or a plugin asked for the registry
            while it was being built.
    """
    global _registry, _building
    with _lock:
        if _registry is None:
            if _building:
                raise PluginError(
                    "a plugin called kdforge.get_registry() while plugins were being registered",
                    hint="look plugins up when they are used, not at import or register time",
                )
            _building = True
            try:
                _registry = _build_registry()
            finally:
                _building = False
        return _registry


def reset_registry() -> None:
    """Forget the registry so the next :func:`get_registry` rebuilds it.

    For tests and tools that install or remove plugin packages inside one process;
    entry points are re-read from the installed distributions on the next build.
    """
    global _registry
    with _lock:
        _registry = None
        importlib.invalidate_caches()


@dataclass
class _Loaded:
    """One plugin object registered with pluggy, and where it came from."""

    key: str
    source: str
    version: str
    entry_point: str | None
    pending: list[PluginRecord] = field(default_factory=list)
    error: Exception | None = None

    @property
    def builtin(self) -> bool:
        return self.source == BUILTIN_SOURCE


def _build_registry() -> PluginRegistry:
    pm = pluggy.PluginManager("kdforge")
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(plugin_manager=pm)
    loaded: dict[str, _Loaded] = {}
    for module_name in BUILTIN_MODULES:
        pm.register(importlib.import_module(module_name), name=module_name)
        loaded[module_name] = _Loaded(module_name, BUILTIN_SOURCE, _own_version(), None)
    for ep, dist_name, dist_version in _entry_points():
        label = f"{ep.name} = {ep.value}"
        key = f"{dist_name}:{ep.name}"
        try:
            plugin = ep.load()
            if pm.is_registered(plugin):
                continue  # the same module exposed twice: register it once
            _check_hook_names(plugin)
            pm.register(plugin, name=key)
        except Exception as exc:
            _fail(registry, dist_name, dist_version, label, "import", exc)
            continue
        loaded[key] = _Loaded(key, dist_name, dist_version, label)
    _call_register_hooks(pm, loaded)
    for item in loaded.values():
        if item.error is None and not item.pending and not item.builtin:
            item.error = PluginError(
                "it registered nothing: no function decorated with @kdforge.hookimpl "
                "called register(name, cls)"
            )
        if item.error is not None:
            if item.builtin:
                raise item.error
            names = tuple((r.kind, r.name) for r in item.pending)
            _fail(
                registry,
                item.source,
                item.version,
                item.entry_point or item.key,
                "register",
                item.error,
                names,
            )
            continue
        for record in item.pending:
            _add_or_conflict(registry, record)
    return registry


def _call_register_hooks(pm: pluggy.PluginManager, loaded: dict[str, _Loaded]) -> None:
    """Call every ``register_*`` hook; collect records per plugin, all-or-nothing."""
    for kind, hook_name in hookspecs.HOOK_KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            item = loaded[impl.plugin_name]
            if item.error is not None:
                continue
            register = _make_register(item, kind)
            arguments = {"register": register}
            try:
                impl.function(*[arguments[a] for a in impl.argnames])
                for record in item.pending:
                    if record.kind == kind:
                        check_record(record)
            except Exception as exc:
                item.error = exc


def _make_register(item: _Loaded, kind: str) -> Callable[[str, Any], None]:
    def register(name: str, cls: Any) -> None:
        item.pending.append(
            PluginRecord(kind, name, cls, item.source, item.version, item.entry_point)
        )

    return register


def _add_or_conflict(registry: PluginRegistry, record: PluginRecord) -> None:
    key = (record.kind, record.name)
    current = registry.records[record.kind].get(record.name)
    if current is not None and current.source == BUILTIN_SOURCE:
        _refuse_builtin_clash(registry, record)
        return
    clash = registry.conflicts.get(key)
    existing = registry.records[record.kind].pop(record.name, None)
    if clash is None and existing is None:
        registry.records[record.kind][record.name] = record
        return
    previous = clash or ([existing] if existing is not None else [])
    clash = [*previous, record]
    registry.conflicts[key] = clash
    warnings.warn(
        conflict_message(record.kind, record.name, clash) + "; the name is unusable until "
        "one of them goes",
        PluginWarning,
        stacklevel=5,
    )


def _refuse_builtin_clash(registry: PluginRegistry, record: PluginRecord) -> None:
    """Keep the built-in; record and warn that ``record``'s distribution reused its name."""
    label = record.kind.replace("_", " ")
    error = (
        f"PluginError: {label} {record.name!r} is a kdforge built-in name; "
        f"{record.origin} registered it again and was refused for that name (a built-in "
        "is never replaced)"
    )
    registry.failures.append(
        PluginFailure(
            record.source,
            record.version,
            record.entry_point or record.source,
            error,
            "clash",
            ((record.kind, record.name),),
        )
    )
    warnings.warn(
        f"kdforge plugin distribution {record.source!r} registers the built-in "
        f"{label} name {record.name!r}: refused, the built-in stays; the distribution "
        "must register it under another name",
        PluginWarning,
        stacklevel=5,
    )


def _check_hook_names(plugin: Any) -> None:
    """Refuse functions marked ``@kdforge.hookimpl`` whose name is not a kdforge hook."""
    hook_names = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "kdforge_spec")]
    for attr in dir(plugin):
        if attr.startswith("__"):
            continue
        value = getattr(plugin, attr, None)
        if hasattr(value, "kdforge_impl") and attr not in hook_names:
            suggestion = closest_match(attr, hook_names)
            tip = f" (did you mean {suggestion!r}?)" if suggestion else ""
            raise PluginError(f"{attr!r} is not a kdforge hook{tip}")


def _fail(
    registry: PluginRegistry,
    source: str,
    version: str,
    label: str,
    stage: str,
    exc: Exception,
    names: tuple[tuple[str, str], ...] = (),
) -> None:
    error = f"{type(exc).__name__}: {exc}"
    registry.failures.append(PluginFailure(source, version, label, error, stage, names))
    verb = "import" if stage == "import" else "register its plugins"
    warnings.warn(
        f"kdforge plugin entry point {label!r} from distribution {source!r} failed to "
        f"{verb} ({error}); other plugins are unaffected",
        PluginWarning,
        stacklevel=5,
    )


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, str, str]]:
    """Entry points of group ``kdforge`` allowed by the environment switches."""
    disabled = os.environ.get("KDFORGE_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower()
    if disabled not in _FALSE_VALUES:
        return []
    allow_raw = os.environ.get("KDFORGE_PLUGINS")
    allow = (
        {normalize_name(p.strip()) for p in allow_raw.split(",") if p.strip()}
        if allow_raw
        else None
    )
    found = []
    seen: set[tuple[str, str]] = set()
    matched: set[str] = set()
    available: list[str] = []
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            dist_name = dist.metadata["Name"] or "unknown"
            key = (normalize_name(dist_name), ep.name)
            if key in seen:
                continue  # the same distribution found twice on sys.path: first wins
            seen.add(key)
            available.append(ep.name)
            if allow is not None:
                hits = allow & {normalize_name(ep.name), normalize_name(dist_name)}
                if not hits:
                    continue
                matched |= hits
            found.append((ep, dist_name, dist.version))
    for name in sorted((allow or set()) - matched):
        warnings.warn(
            f"KDFORGE_PLUGINS names {name!r}, which matches no installed kdforge plugin "
            f"(installed entry points: {', '.join(sorted(available)) or 'none'})",
            PluginWarning,
            stacklevel=4,
        )
    return found


def _own_version() -> str:
    try:
        return importlib.metadata.version("kdforge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
