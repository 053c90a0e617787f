"""The ``kdforge`` command line.

Errors of the kdforge family print one line (plus a hint) and exit 2; anything else
exits 1 with a pointer to ``--debug``, which shows the traceback.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from kdforge.errors import ConfigError, KDForgeError

__all__ = ["main"]


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. search.num_trials=4)")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _cmd_search(args: argparse.Namespace) -> int:
    from kdforge.config import load_search_config
    from kdforge.search import run_search

    overrides = _parse_set(args.set or [])
    if args.num_trials is not None:
        overrides["search.num_trials"] = args.num_trials
    if args.epochs is not None:
        overrides["search.epochs"] = args.epochs
    config = load_search_config(args.config, overrides)
    run_search(config, tracking_uri=args.tracking_uri, address=args.address)
    return 0


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from kdforge.config import load_teacher_config
    from kdforge.teacher_training import train_teacher

    config = load_teacher_config(args.config, _parse_set(args.set or []))
    train_teacher(config, tracking_uri=args.tracking_uri)
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from kdforge.plugin_manager import get_registry

    registry = get_registry()
    if args.action == "show":
        if not args.name:
            raise ConfigError("kdforge plugins show needs a plugin NAME")
        print(describe_plugin(args.name, args.kind))
        return 0
    records = registry.list(args.kind)
    rows = [("KIND", "NAME", "SOURCE", "DESCRIPTION")]
    rows += [(r.kind, r.name, r.source, r.description) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=False)) + "  " + row[3])
    for failure in registry.failures:
        print(f"(failed) {failure.entry_point} from {failure.source}: {failure.error}")
    return 0


def describe_plugin(name: str, kind: str | None = None) -> str:
    """A multi-line description of one plugin: kind, source, docs, params, hyperparams."""
    from kdforge.errors import PluginError
    from kdforge.plugin_manager import get_registry

    registry = get_registry()
    matches = [r for r in registry.list(kind) if r.name == name]
    if not matches:
        all_names = sorted({r.name for r in registry.list(kind)})
        from kdforge.errors import closest_match

        suggestion = closest_match(name, all_names)
        raise PluginError(
            f"unknown plugin {name!r}; available: {', '.join(all_names)}",
            hint=f"did you mean {suggestion!r}?" if suggestion else None,
        )
    out = []
    for record in matches:
        out.append(f"{record.name} ({record.kind})")
        out.append(f"  source:  {record.source} {record.version}".rstrip())
        out.append(f"  class:   {record.cls.__module__}.{record.cls.__qualname__}")
        if record.entry_point:
            out.append(f"  entry point: {record.entry_point}")
        doc = inspect.getdoc(record.cls) or ""
        if doc:
            out.append("  " + doc.replace("\n", "\n  "))
        fields = record.cls.Params.model_fields
        out.append("  parameters:" if fields else "  parameters: none")
        for field_name, field in fields.items():
            annotation = getattr(field.annotation, "__name__", str(field.annotation))
            default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
            out.append(f"    {field_name}: {annotation} ({default}) {field.description or ''}".rstrip())
        hyper = getattr(record.cls, "hyperparameters", ())
        if hyper:
            out.append("  searched hyperparameters:")
            for hp in hyper:
                scale = "log" if hp.log else "linear"
                out.append(
                    f"    {hp.name}: {hp.kind} in [{hp.low:g}, {hp.high:g}] ({scale}), "
                    f"default {hp.default} {hp.help}".rstrip()
                )
        if record.kind == "search_space":
            out.append("  searched hyperparameters (one random sample): " + _sample_space(record.cls))
    return "\n".join(out)


def _sample_space(cls: Any) -> str:
    import optuna

    from kdforge.data import DataInfo

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    cls().suggest(trial, DataInfo(name="example", input_shape=(1, 8, 8), num_classes=10))
    return ", ".join(f"{k}: {type(d).__name__}" for k, d in trial.distributions.items())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kdforge`` command."""
    parser = argparse.ArgumentParser(
        prog="kdforge",
        description="Search the smallest student that keeps the teacher's accuracy.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    search = sub.add_parser("search", help="run a distillation search from a YAML config")
    search.add_argument("config", help="search config (YAML)")
    search.add_argument("--tracking-uri", help="MLflow tracking URI (overrides tracking.uri)")
    search.add_argument("--address", help="Ray cluster address to join (overrides search.address)")
    search.add_argument("--num-trials", type=int, help="override search.num_trials")
    search.add_argument("--epochs", type=int, help="override search.epochs")
    search.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any config key (repeatable)"
    )
    search.set_defaults(func=_cmd_search)

    teacher = sub.add_parser("train-teacher", help="train a teacher and save a kdforge checkpoint")
    teacher.add_argument("config", help="teacher config (YAML)")
    teacher.add_argument("--tracking-uri", help="MLflow tracking URI (overrides tracking.uri)")
    teacher.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    teacher.set_defaults(func=_cmd_train_teacher)

    plugins = sub.add_parser("plugins", help="list plugins, or show one")
    plugins.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    plugins.add_argument("name", nargs="?", help="plugin name (with 'show')")
    plugins.add_argument(
        "--kind", choices=["dataset", "teacher", "search_space", "loss", "exporter"],
        help="only this kind",
    )
    plugins.set_defaults(func=_cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kdforge`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KDForgeError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: run again with --debug for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
