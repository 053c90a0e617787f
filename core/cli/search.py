"""``kdforge search CONFIG`` and ``kdforge resume SEARCH_DIR``.

Thin layers over the Python API (:mod:`kdforge.api`): the command reads the YAML and
its overrides, then runs the search exactly as ``kdforge.distill`` does.
"""

from __future__ import annotations

import argparse
from typing import Any

from kdforge.cli._options import parse_set
from kdforge.config import load_search_config

__all__ = ["add_commands", "selection_overrides"]


def _cmd_search(args: argparse.Namespace) -> int:
    overrides = parse_set(args.set or [])
    if args.num_trials is not None:
        overrides["search.num_trials"] = args.num_trials
    if args.epochs is not None:
        overrides["search.epochs"] = args.epochs
    overrides.update(selection_overrides(args))
    config = load_search_config(args.config, overrides)
    from kdforge.api import run_config  # imports Ray and Optuna: only now

    run_config(config, tracking_uri=args.tracking_uri, address=args.address)
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from kdforge.api import resume  # imports Ray and Optuna: only now

    resume(
        args.search_dir,
        tracking_uri=args.tracking_uri,
        address=args.address,
        trust_state=args.trust_state,
    )
    return 0


def selection_overrides(args: argparse.Namespace) -> dict[str, Any]:
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


def add_commands(sub: Any) -> None:
    """Add ``search`` and ``resume`` to the CLI's subcommands."""
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
    resume.add_argument(
        "--trust-state",
        action="store_true",
        help="restore Ray state files kdforge did not record (they are unpickled)",
    )
    resume.set_defaults(func=_cmd_resume)
