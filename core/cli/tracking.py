"""``kdforge report SEARCH_DIR`` and ``kdforge promote TARGET``.

``kdforge report`` prints a finished search's leaderboard and summary and writes
``report.html`` (plots embedded). ``kdforge promote`` points a registry alias at a
version (:func:`kdforge.tracking.promote.promote_target`).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def _cmd_report(args: argparse.Namespace) -> int:
    from kdforge.report.render import report_search_dir  # imports matplotlib: only now

    report_search_dir(args.search_dir)
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from kdforge.tracking.promote import promote_target  # imports MLflow: only now

    promote_target(
        args.target,
        version=args.version,
        alias=args.alias,
        if_better=args.if_better,
        config_path=args.config,
        tracking_uri=args.tracking_uri,
    )
    return 0


def add_commands(sub: Any) -> None:
    """Add ``report`` and ``promote`` to the CLI's subcommands."""
    report = sub.add_parser(
        "report", help="print a search's leaderboard and summary, write report.html"
    )
    report.add_argument("search_dir", help="a search folder (output_dir/<name>/<timestamp>)")
    report.set_defaults(func=_cmd_report)

    promote = sub.add_parser("promote", help="point a registry alias (champion) at a version")
    promote.add_argument("target", help="a finished search folder, or a registered model name")
    promote.add_argument("--version", help="model version (default: the search's, or the latest)")
    promote.add_argument("--alias", default="champion", help="alias to move (default champion)")
    promote.add_argument(
        "--if-better",
        action="store_true",
        help="move it only if the version beats the alias's current one on the test split",
    )
    promote.add_argument("--config", help="search config giving the dataset (with --if-better)")
    promote.add_argument("--tracking-uri", help="MLflow tracking URI holding the registry")
    promote.set_defaults(func=_cmd_promote)
