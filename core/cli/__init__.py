"""The ``kdforge`` command line.

Errors of the kdforge family print one line (plus a hint) and exit 2; anything else
exits 1 with a pointer to ``--debug``, which shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from kdforge.errors import ConfigError, KDForgeError
from kdforge.hookspecs import HOOK_KINDS

__all__ = ["main"]


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. search.num_trials=4)")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _cmd_resume(args: argparse.Namespace) -> int:
    from kdforge.search.driver import resume_search

    resume_search(args.search_dir, tracking_uri=args.tracking_uri, address=args.address)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from kdforge.config import load_search_config
    from kdforge.search.driver import run_search

    overrides = _parse_set(args.set or [])
    if args.num_trials is not None:
        overrides["search.num_trials"] = args.num_trials
    if args.epochs is not None:
        overrides["search.epochs"] = args.epochs
    overrides.update(_selection_overrides(args))
    config = load_search_config(args.config, overrides)
    run_search(config, tracking_uri=args.tracking_uri, address=args.address)
    return 0


def _selection_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``selection.*`` overrides from --select/--tolerance/--max-latency-ms/--max-params."""
    pairs = {
        "selection.rule": args.select,
        "selection.tolerance": args.tolerance,
        "selection.max_latency_ms": args.max_latency_ms,
        "selection.max_params": args.max_params,
    }
    out = {k: v for k, v in pairs.items() if v is not None}
    limited = args.max_latency_ms is not None or args.max_params is not None
    if limited and args.select is None:
        out["selection.rule"] = "most_accurate_under"  # a limit alone means "best under it"
    return out


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from kdforge.config import load_teacher_config
    from kdforge.teacher.train_teacher import train_teacher

    config = load_teacher_config(args.config, _parse_set(args.set or []))
    train_teacher(config, tracking_uri=args.tracking_uri)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from kdforge.deploy.serve import resolve_target, serve_mlflow, serve_ray

    target = resolve_target(args.model, alias=args.alias, tracking_uri=args.tracking_uri)
    if not args.ray:
        return serve_mlflow(target, host=args.host, port=args.port or 5000, workers=args.workers)
    from kdforge.deploy.ray_serve_app import RayServeSettings

    settings = RayServeSettings(
        max_batch_size=args.max_batch_size,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        num_cpus=args.replica_cpus,
    )
    port = args.port or 8000
    return serve_ray(target, host=args.host, port=port, settings=settings, address=args.address)


def _cmd_quantize(args: argparse.Namespace) -> int:
    from kdforge.config import validate_config
    from kdforge.config.quantize_settings import QuantizeSettings
    from kdforge.export.quantize import quantize_search_dir

    settings = None
    if args.mode is not None:
        raw = {
            "mode": args.mode,
            "max_accuracy_drop": args.max_accuracy_drop,
            "calibration_samples": args.calibration_samples,
            "alias": args.alias or None,
        }
        settings = validate_config(raw, QuantizeSettings, source="kdforge quantize options")
    quantize_search_dir(
        args.search_dir, settings, tracking_uri=args.tracking_uri, register=not args.no_register
    )
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from kdforge.plugin_host.manager import get_registry

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
    for (kind, name), clash in sorted(registry.conflicts.items()):
        print(f"(clash) {kind} {name!r} from " + " and ".join(r.source for r in clash))
    return 0


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    from kdforge.plugin_host.scaffold import new_plugin

    result = new_plugin(args.kind, args.name, args.dir)
    print(f"wrote {result.distribution} in {result.root}:")
    for file in result.files:
        print(f"  {file}")
    print(
        f"next: pip install -e {result.root} && kdforge plugins show {args.name} "
        f"&& pytest {result.root}"
    )
    return 0


def describe_plugin(name: str, kind: str | None = None) -> str:
    """A multi-line description of one plugin: kind, source, docs, params, hyperparams."""
    from kdforge.plugin_host.info import describe_plugin as describe

    return describe(name, kind)


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
        "--select",
        choices=["accuracy", "smallest_within", "most_accurate_under"],
        help="how the student to export is chosen (overrides selection.rule)",
    )
    search.add_argument(
        "--tolerance", type=float, help="accuracy slack of smallest_within (0.01 = 1 point)"
    )
    search.add_argument(
        "--max-latency-ms",
        type=float,
        help="export the most accurate student at most this slow (ONNX, batch 1, ms)",
    )
    search.add_argument(
        "--max-params",
        type=int,
        help="export the most accurate student with at most this many parameters",
    )
    search.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any config key (repeatable)"
    )
    search.set_defaults(func=_cmd_search)

    resume = sub.add_parser(
        "resume", help="continue a search after a crash or a lost tracking server"
    )
    resume.add_argument("search_dir", help="the search folder (output_dir/NAME/TIMESTAMP)")
    resume.add_argument("--tracking-uri", help="MLflow tracking URI (default: the search's)")
    resume.add_argument("--address", help="Ray cluster address to join")
    resume.set_defaults(func=_cmd_resume)

    teacher = sub.add_parser("train-teacher", help="train a teacher and save a kdforge checkpoint")
    teacher.add_argument("config", help="teacher config (YAML)")
    teacher.add_argument("--tracking-uri", help="MLflow tracking URI (overrides tracking.uri)")
    teacher.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key"
    )
    teacher.set_defaults(func=_cmd_train_teacher)

    plugins = sub.add_parser("plugins", help="list plugins, or show one")
    plugins.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    plugins.add_argument("name", nargs="?", help="plugin name (with 'show')")
    plugins.add_argument("--kind", choices=list(HOOK_KINDS), help="only this kind")
    plugins.set_defaults(func=_cmd_plugins)

    new = sub.add_parser("new-plugin", help="write a pip-installable plugin package")
    new.add_argument("kind", metavar="KIND", help=f"plugin kind: {', '.join(HOOK_KINDS)}")
    new.add_argument("name", metavar="NAME", help="plugin name used in configs (e.g. my_loss)")
    new.add_argument(
        "dir", metavar="DIR", nargs="?", help="package folder (default ./kdforge-NAME)"
    )
    new.set_defaults(func=_cmd_new_plugin)
    _add_deploy_commands(sub)
    from kdforge.cli.tracking import add_tracking_commands

    add_tracking_commands(sub)  # report, promote
    return parser


def _add_deploy_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve a registered student over HTTP (MLflow/Ray Serve)")
    serve.add_argument(
        "model", help="models:/NAME@ALIAS (or another model URI), a registered name or a search dir"
    )
    serve.add_argument("--alias", default="champion", help="alias served for a bare NAME")
    serve.add_argument("--tracking-uri", help="MLflow tracking URI holding the registry")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: all)")
    serve.add_argument("--port", type=int, help="port (default 5000, or 8000 with --ray)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn workers (MLflow server)")
    serve.add_argument("--ray", action="store_true", help="serve with Ray Serve (autoscaling)")
    serve.add_argument("--address", help="Ray cluster address to join (--ray; default: local Ray)")
    serve.add_argument(
        "--max-batch-size", type=int, default=1024, help="--ray: rows per request; more -> 413"
    )
    serve.add_argument("--min-replicas", type=int, default=1, help="--ray: autoscaling minimum")
    serve.add_argument("--max-replicas", type=int, default=4, help="--ray: autoscaling maximum")
    serve.add_argument("--replica-cpus", type=float, default=1.0, help="--ray: CPUs per replica")
    serve.set_defaults(func=_cmd_serve)

    quantize = sub.add_parser("quantize", help="int8-quantize a search's ONNX student")
    quantize.add_argument("search_dir", help="a finished search folder")
    quantize.add_argument(
        "--mode", choices=["dynamic", "static"], help="overrides the config's quantize.mode"
    )
    quantize.add_argument("--max-accuracy-drop", type=float, default=0.01, help="with --mode")
    quantize.add_argument("--calibration-samples", type=int, default=256, help="with --mode static")
    quantize.add_argument("--alias", default="int8", help="with --mode: alias of the new version")
    quantize.add_argument("--tracking-uri", help="MLflow tracking URI (overrides tracking.uri)")
    quantize.add_argument("--no-register", action="store_true", help="measure and report only")
    quantize.set_defaults(func=_cmd_quantize)


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


def run() -> None:
    """The ``kdforge`` console command: :func:`main`, then exit without teardown.

    Once a search is done, Python's teardown of the modules it loaded (torch, Ray,
    MLflow) takes another 1-1.5 s on a small machine and does nothing a user needs.
    The exit handlers (Ray, MLflow, logging) still run and the output is flushed;
    only the module teardown is skipped, and not when another thread is still working.
    """
    code = main()
    import atexit
    import os
    import threading

    busy = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if busy or run_exit_handlers is None:
        sys.exit(code)
    run_exit_handlers()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
