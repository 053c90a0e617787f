"""The plugin registry's records: what is registered, what failed, what clashed.

:mod:`kdforge.plugin_host.manager` builds a :class:`PluginRegistry` once per process (and
re-exports everything here); this module holds the data and its lookup errors.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kdforge import hookspecs
from kdforge.errors import PluginError, closest_match
from kdforge.interfaces import DatasetPlugin, Exporter, LossStrategy, SearchSpace, Task, Teacher

__all__ = [
    "BUILTIN_SOURCE",
    "PLUGIN_BASES",
    "PluginFailure",
    "PluginRecord",
    "PluginRegistry",
    "PluginWarning",
    "check_record",
    "conflict_message",
    "normalize_name",
]

#: Plugin kind -> the base class every plugin of that kind subclasses.
PLUGIN_BASES: dict[str, type] = {
    "dataset": DatasetPlugin,
    "teacher": Teacher,
    "search_space": SearchSpace,
    "loss": LossStrategy,
    "exporter": Exporter,
    "task": Task,
}

BUILTIN_SOURCE = "kdforge (built-in)"

# Names end up in YAML configs, CLI arguments and MLflow params: keep them plain.
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


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

    @property
    def origin(self) -> str:
        """Where the plugin comes from, for messages: source, entry point and module."""
        where = f"{self.source} {self.version}".strip()
        if self.entry_point:
            where += f", entry point {self.entry_point!r}"
        return f"{where} ({self.cls.__module__}.{self.cls.__qualname__})"


@dataclass(frozen=True)
class PluginFailure:
    """A third-party plugin that could not be loaded or registered.

    Attributes:
        source: Distribution name.
        version: Distribution version.
        entry_point: The entry point, as ``name = value``.
        error: ``ExceptionType: message``.
        stage: ``"import"`` (loading the entry point), ``"register"`` (its hooks), or
            ``"clash"`` (it registered a built-in's name, which was refused).
        names: ``(kind, name)`` pairs it registered before failing (all dropped).
    """

    source: str
    version: str
    entry_point: str
    error: str
    stage: str
    names: tuple[tuple[str, str], ...] = ()

    @property
    def entry_point_name(self) -> str:
        """The entry point's own name (left of ``=``)."""
        return self.entry_point.split("=", 1)[0].strip()

    def may_provide(self, kind: str, name: str) -> bool:
        """Whether a config asking for ``name`` most likely meant this plugin.

        Exact when the plugin registered ``name`` before failing; otherwise by name:
        the entry point, the distribution (with or without a ``kdforge-`` prefix) or
        the module (with or without ``kdforge_``) is called ``name``.
        """
        if (kind, name) in self.names:
            return True
        wanted = normalize_name(name)
        value = self.entry_point.split("=", 1)[-1].strip().split(":")[0]
        candidates = {
            self.entry_point_name,
            self.source,
            value.rsplit(".", 1)[-1],
        }
        normalized = {normalize_name(c) for c in candidates}
        normalized |= {c.removeprefix("kdforge_") for c in normalized}
        return wanted in normalized


@dataclass
class PluginRegistry:
    """All plugins known to this process, by kind and name."""

    records: dict[str, dict[str, PluginRecord]] = field(
        default_factory=lambda: {kind: {} for kind in hookspecs.HOOK_KINDS}
    )
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: dict[tuple[str, str], list[PluginRecord]] = field(default_factory=dict)
    plugin_manager: pluggy.PluginManager | None = None

    def add(self, record: PluginRecord) -> None:
        """Add one record.

        Raises:
            PluginError: the class is not a usable plugin of its kind, the name is not
                a plain name, or the name is already registered (naming both sources).
        """
        check_record(record)
        key = (record.kind, record.name)
        existing = self.records[record.kind].get(record.name)
        clash = self.conflicts.get(key) or ([existing] if existing is not None else [])
        if clash:
            raise PluginError(
                conflict_message(record.kind, record.name, [*clash, record]), hint=CONFLICT_HINT
            )
        self.records[record.kind][record.name] = record

    def get(self, kind: str, name: str) -> PluginRecord:
        """Return the plugin ``name`` of ``kind``.

        Raises:
            PluginError: unknown kind; unknown name (listing the available ones and the
                closest match); a name two plugins registered (naming both); a name
                that a plugin which failed to load would have provided (with its error).
        """
        if kind not in self.records:
            raise PluginError(
                f"unknown plugin kind {kind!r}; kinds: {', '.join(self.records)}",
                hint=_did_you_mean(kind, self.records),
            )
        found = self.records[kind].get(name)
        if found is not None:
            return found
        clash = self.conflicts.get((kind, name))
        if clash:
            raise PluginError(conflict_message(kind, name, clash), hint=CONFLICT_HINT)
        failure = self.failure_for(kind, name)
        label = kind.replace("_", " ")
        if failure is not None:
            raise PluginError(
                f"{label} {name!r} is not available: plugin {failure.entry_point!r} from "
                f"distribution {failure.source!r} failed to "
                f"{'import' if failure.stage == 'import' else 'register'}: {failure.error}",
                hint=f"fix or reinstall {failure.source!r} (`pip install -U {failure.source}`), "
                "or choose another plugin; `kdforge plugins` lists what loaded",
            )
        available = sorted(self.records[kind])
        hint = _did_you_mean(name, available)
        if self.failures:
            failed = ", ".join(f"{f.entry_point!r} ({f.source})" for f in self.failures)
            hint = (hint + "; " if hint else "") + (
                f"these plugins failed to load and may provide it: {failed}"
            )
        raise PluginError(
            f"unknown {label} {name!r}; available: {', '.join(available) or 'none'}",
            hint=hint or f"`kdforge plugins --kind {kind}` lists them",
        )

    def failure_for(self, kind: str, name: str) -> PluginFailure | None:
        """The failed plugin that most likely provides ``name`` of ``kind``, if any."""
        exact = [f for f in self.failures if (kind, name) in f.names]
        if exact:
            return exact[0]
        for failure in self.failures:
            if failure.may_provide(kind, name):
                return failure
        return None

    def find(self, name: str, kind: str | None = None) -> list[PluginRecord]:
        """Every record called ``name`` (of ``kind`` when given), across kinds."""
        return [r for r in self.list(kind) if r.name == name]

    def list(self, kind: str | None = None) -> list[PluginRecord]:
        """All records, optionally of one kind, sorted by kind then name."""
        kinds = [kind] if kind else list(self.records)
        return [self.records[k][n] for k in kinds for n in sorted(self.records.get(k, {}))]


def check_record(record: PluginRecord) -> None:
    """Check that a registration is usable: plain name, concrete subclass of its base.

    Raises:
        PluginError: naming the plugin, the source and what is wrong.
    """
    if record.kind not in PLUGIN_BASES:
        raise PluginError(f"{record.source} registered unknown plugin kind {record.kind!r}")
    base = PLUGIN_BASES[record.kind]
    if not isinstance(record.name, str) or not _NAME_PATTERN.match(record.name):
        raise PluginError(
            f"{record.source} registered {record.kind} name {record.name!r}: names must start "
            "with a letter or '_' and hold only letters, digits, '_', '-' and '.'"
        )
    if not (inspect.isclass(record.cls) and issubclass(record.cls, base)):
        raise PluginError(
            f"{record.source} registered {record.kind} {record.name!r} as "
            f"{record.cls!r}, which is not a subclass of kdforge.{base.__name__}"
        )
    if inspect.isabstract(record.cls):
        missing = ", ".join(sorted(getattr(record.cls, "__abstractmethods__", ())))
        raise PluginError(
            f"{record.source} registered {record.kind} {record.name!r} as "
            f"{record.cls.__qualname__}, which does not implement: {missing}"
        )


CONFLICT_HINT = (
    "uninstall one of the packages, or set KDFORGE_PLUGINS to the third-party plugins "
    "you want to load"
)


def conflict_message(kind: str, name: str, records: list[PluginRecord]) -> str:
    sources = " and by ".join(r.origin for r in records)
    return f"{kind.replace('_', ' ')} {name!r} is registered more than once: by {sources}"


def _did_you_mean(name: str, choices: Any) -> str | None:
    suggestion = closest_match(name, choices)
    return f"did you mean {suggestion!r}?" if suggestion else None


def normalize_name(name: str) -> str:
    """PEP 503-style name normalisation with underscores (``Foo-Bar`` -> ``foo_bar``)."""
    return re.sub(r"[-_.]+", "_", name).lower()
