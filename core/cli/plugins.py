"""``kdforge plugins [list|show NAME]`` and ``kdforge new-plugin KIND NAME [DIR]``."""

from __future__ import annotations

import argparse
from typing import Any

from kdforge.errors import ConfigError, closest_match
from kdforge.hookspecs import HOOK_KINDS
from kdforge.plugin_host.info import describe_plugin
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.scaffold import new_plugin

__all__ = ["add_commands"]


def _plugin_kind(text: str) -> str:
    """The plugin kind ``text`` names: ``loss``, ``losses``, ``search-space`` ... .

    Raises:
        ConfigError: ``text`` names no kind (the hint suggests the closest).
    """
    key = text.strip().lower().replace("-", "_")
    for kind in HOOK_KINDS:
        if key in (kind, kind + "s", kind + "es"):
            return kind
    plural = {kind + ("es" if kind.endswith("s") else "s"): kind for kind in HOOK_KINDS}
    suggestion = closest_match(key, [*HOOK_KINDS, *plural])
    raise ConfigError(
        f"kdforge plugins list: unknown plugin kind {text!r}; kinds: {', '.join(HOOK_KINDS)}",
        hint=f"did you mean {plural.get(suggestion, suggestion)!r}?"
        if suggestion
        else "`kdforge plugins list` lists every kind",
    )


def _cmd_plugins(args: argparse.Namespace) -> int:
    registry = get_registry()
    if args.action == "show":
        if not args.name:
            raise ConfigError("kdforge plugins show needs a plugin NAME")
        print(describe_plugin(args.name, args.kind))
        return 0
    kind = args.kind
    if args.name:  # `kdforge plugins list loss`: the kind, positionally
        positional = _plugin_kind(args.name)
        if kind and kind != positional:
            raise ConfigError(
                f"kdforge plugins list: kind {args.name!r} and --kind {kind} disagree",
                hint="give the kind once",
            )
        kind = positional
    records = registry.list(kind)
    rows = [("KIND", "NAME", "SOURCE", "DESCRIPTION")]
    rows += [(r.kind, r.name, r.source, r.description) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=False)) + "  " + row[3])
    for failure in registry.failures:
        print(f"(failed) {failure.entry_point} from {failure.source}: {failure.error}")
    for (kind, name), clash in sorted(registry.conflicts.items()):
        print(f"(clash) {kind} {name!r} from " + " and ".join(r.source for r in clash))
    return 0


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    result = new_plugin(args.kind, args.name, args.dir)
    print(f"wrote {result.distribution} in {result.root}:")
    for file in result.files:
        print(f"  {file}")
    print(
        f"next: pip install -e {result.root} && kdforge plugins show {args.name} "
        f"&& pytest {result.root}"
    )
    return 0


def add_commands(sub: Any) -> None:
    """Add ``plugins`` and ``new-plugin`` to the CLI's subcommands."""
    plugins = sub.add_parser(
        "plugins", help="list plugins (of one kind: `plugins list loss`), or show one"
    )
    plugins.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    plugins.add_argument(
        "name",
        nargs="?",
        help=f"with 'list': a kind ({', '.join(HOOK_KINDS)}); with 'show': a plugin name",
    )
    plugins.add_argument("--kind", choices=list(HOOK_KINDS), help="only this kind")
    plugins.set_defaults(func=_cmd_plugins)

    new = sub.add_parser("new-plugin", help="write a pip-installable plugin package")
    new.add_argument("kind", metavar="KIND", help=f"plugin kind: {', '.join(HOOK_KINDS)}")
    new.add_argument("name", metavar="NAME", help="plugin name used in configs (e.g. my_loss)")
    new.add_argument(
        "dir", metavar="DIR", nargs="?", help="package folder (default ./kdforge-NAME)"
    )
    new.set_defaults(func=_cmd_new_plugin)
