"""``kdforge train-teacher CONFIG``."""

from __future__ import annotations

import argparse
from typing import Any

from kdforge.cli._options import parse_set
from kdforge.config import load_teacher_config

__all__ = ["add_commands"]


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    config = load_teacher_config(args.config, parse_set(args.set or []))
    from kdforge.teacher.train_teacher import train_teacher  # imports MLflow: only now

    train_teacher(config, tracking_uri=args.tracking_uri)
    return 0


def add_commands(sub: Any) -> None:
    """Add ``train-teacher`` to the CLI's subcommands."""
    teacher = sub.add_parser("train-teacher", help="train a teacher and save a kdforge checkpoint")
    teacher.add_argument("config", help="teacher config (YAML)")
    teacher.add_argument("--tracking-uri", help="MLflow tracking URI (overrides tracking.uri)")
    teacher.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key"
    )
    teacher.set_defaults(func=_cmd_train_teacher)
