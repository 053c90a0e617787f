"""The plugin registry: built-ins plus entry-point plugins, loaded once per process.

Environment switches (pytest's pattern):

* ``KDFORGE_DISABLE_PLUGIN_AUTOLOAD=1`` loads built-in plugins only;
* ``KDFORGE_PLUGINS=a,b`` loads only the named third-party entry points.

A third-party plugin that fails to import or raises while registering is reported as a
warning naming its distribution, entry point and error; every other plugin still
works, and asking for one of the names it would have provided raises a
:class:`~kdforge.errors.PluginError` that says why it is missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kdforge import hookspecs
from kdforge.errors import PluginError, closest_match
from kdforge.interfaces import DatasetPlugin, Exporter, LossStrategy, SearchSpace, Teacher

__all__ = [
    "BUILTIN_MODULES",
    "ENTRY_POINT_GROUP",
    "PluginRecord",
    "PluginRegistry",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "kdforge"

BUILTIN_MODULES: tuple[str, ...] = (
    "kdforge.plugins.datasets.digits",
    "kdforge.plugins.teachers.checkpoint",
    "kdforge.plugins.losses.hinton_kd",
    "kdforge.plugins.exporters.onnx",
    "kdforge.search_spaces.mlp",
    "kdforge.search_spaces.cnn",
)

_BASES: dict[str, type] = {
    "dataset": DatasetPlugin,
    "teacher": Teacher,
    "search_space": SearchSpace,
    "loss": LossStrategy,
    "exporter": Exporter,
}

BUILTIN_SOURCE = "kdforge (built-in)"


class PluginWarning(UserWarning):
    """A third-party plugin could not be loaded or registered."""


@dataclass(frozen=True)
class PluginRecord:
    """One registered plugin.

    Attributes:
        kind: ``dataset``, ``teacher``, ``search_space``, ``loss`` or ``exporter``.
        name: The name configs use.
        cls: The plugin class.
        source: ``"kdforge (built-in)"`` or the distribution that provided it.
        version: Version of that distribution.
        entry_point: The entry point (``name = module``), for third-party plugins.
    """

    kind: str
    name: str
    cls: Any
    source: str
    version: str
    entry_point: str | None = None

    @property
    def description(self) -> str:
        """First line of the plugin class docstring."""
        doc = inspect.getdoc(self.cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


@dataclass
class _Failure:
    source: str
    entry_point: str
    error: str


@dataclass
class PluginRegistry:
    """All plugins known to this process, by kind and name."""

    records: dict[str, dict[str, PluginRecord]] = field(
        default_factory=lambda: {kind: {} for kind in hookspecs.HOOK_KINDS}
    )
    failures: list[_Failure] = field(default_factory=list)
    plugin_manager: pluggy.PluginManager | None = None

    def add(self, record: PluginRecord) -> None:
        """Add one record; a name registered twice is an error naming both sources."""
        base = _BASES[record.kind]
        if not (inspect.isclass(record.cls) and issubclass(record.cls, base)):
            raise PluginError(
                f"{record.source} registered {record.kind} {record.name!r} as "
                f"{record.cls!r}, which is not a subclass of kdforge.{base.__name__}"
            )
        existing = self.records[record.kind].get(record.name)
        if existing is not None:
            raise PluginError(
                f"{record.kind} {record.name!r} is registered twice: by {existing.source} "
                f"({existing.cls.__module__}) and by {record.source} ({record.cls.__module__})",
                hint="uninstall one of the two packages or limit KDFORGE_PLUGINS",
            )
        self.records[record.kind][record.name] = record

    def get(self, kind: str, name: str) -> PluginRecord:
        """Return the plugin ``name`` of ``kind``.

        Raises:
            PluginError: unknown name (listing the available ones and the closest
                match), or a plugin that failed to load.
        """
        if kind not in self.records:
            raise PluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(self.records)}")
        found = self.records[kind].get(name)
        if found is not None:
            return found
        available = sorted(self.records[kind])
        failed = [f for f in self.failures if name in f.entry_point or name == f.source]
        if failed:
            f = failed[0]
            raise PluginError(
                f"{kind} {name!r} is not available: plugin {f.entry_point!r} from "
                f"{f.source} failed to load: {f.error}"
            )
        suggestion = closest_match(name, available)
        hint = f"did you mean {suggestion!r}?" if suggestion else None
        raise PluginError(
            f"unknown {kind.replace('_', ' ')} {name!r}; available: {', '.join(available) or 'none'}",
            hint=hint,
        )

    def list(self, kind: str | None = None) -> list[PluginRecord]:
        """All records, optionally of one kind, sorted by kind then name."""
        kinds = [kind] if kind else list(self.records)
        return [self.records[k][n] for k in kinds for n in sorted(self.records[k])]


_lock = threading.Lock()
_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """Build (once per process) and return the plugin registry."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _build_registry()
        return _registry


def reset_registry() -> None:
    """Forget the registry so the next :func:`get_registry` rebuilds it (for tests)."""
    global _registry
    with _lock:
        _registry = None


def _build_registry() -> PluginRegistry:
    pm = pluggy.PluginManager("kdforge")
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(plugin_manager=pm)
    sources: dict[str, tuple[str, str, str | None]] = {}
    for module_name in BUILTIN_MODULES:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        sources[module_name] = (BUILTIN_SOURCE, _own_version(), None)
    for ep, dist_name, dist_version in _entry_points():
        label = f"{ep.name} = {ep.value}"
        try:
            plugin = ep.load()
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=f"{dist_name}:{ep.name}")
        except Exception as exc:
            _warn_failure(registry, dist_name, label, exc)
            continue
        sources[f"{dist_name}:{ep.name}"] = (dist_name, dist_version, label)
    for kind, hook_name in hookspecs.HOOK_KINDS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            source, version, label = sources.get(impl.plugin_name, (impl.plugin_name, "", None))
            pending: list[PluginRecord] = []

            def register(name: str, cls: Any, *, _pending: list[PluginRecord] = pending,
                         _kind: str = kind, _src: str = source, _ver: str = version,
                         _label: str | None = label) -> None:
                _pending.append(PluginRecord(_kind, name, cls, _src, _ver, _label))

            try:
                impl.function(register=register)
            except Exception as exc:
                if source == BUILTIN_SOURCE:
                    raise
                _warn_failure(registry, source, label or impl.plugin_name, exc)
                continue
            for record in pending:
                registry.add(record)
    return registry


def _warn_failure(registry: PluginRegistry, source: str, label: str, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"
    registry.failures.append(_Failure(source, label, error))
    warnings.warn(
        f"kdforge plugin {label!r} from distribution {source!r} failed to load ({error}); "
        "other plugins are unaffected",
        PluginWarning,
        stacklevel=3,
    )


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, str, str]]:
    if os.environ.get("KDFORGE_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0"):
        return []
    allow_raw = os.environ.get("KDFORGE_PLUGINS")
    allow = {p.strip() for p in allow_raw.split(",") if p.strip()} if allow_raw else None
    found = []
    seen: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            dist_name = dist.metadata["Name"] or "unknown"
            key = (dist_name, ep.name)
            if key in seen:
                continue
            seen.add(key)
            if allow is not None and ep.name not in allow and dist_name not in allow:
                continue
            found.append((ep, dist_name, dist.version))
    return found


def _own_version() -> str:
    try:
        return importlib.metadata.version("kdforge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
