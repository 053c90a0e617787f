"""The ``kdforge report`` and ``kdforge promote`` commands.

``kdforge report SEARCH_DIR`` prints a finished search's leaderboard and summary and
writes ``report.html`` (plots embedded). ``kdforge promote`` points a registry alias
at a version: given a search folder, the version that search registered; given a
registered model name, ``--version`` or the latest one. With ``--if-better`` the alias
moves only if the version beats the alias's current one on the test split of the
search's dataset (``--config``, or the folder's ``config.yaml``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge.errors import ConfigError

__all__ = ["add_tracking_commands", "promote_command"]


def promote_command(
    target: str,
    *,
    version: str | None = None,
    alias: str = "champion",
    if_better: bool = False,
    config_path: str | None = None,
    tracking_uri: str | None = None,
    emit: Callable[[str], None] = print,
) -> Any:
    """Move ``alias`` of a registered student (see module docstring).

    Returns:
        The :class:`~kdforge.tracking.promote.Promotion`.

    Raises:
        ConfigError: a folder without ``summary.json``, or ``--if-better`` without a
            config to take the test split from.
        TrackingError: the registry or the model cannot be reached.
    """
    import mlflow

    from kdforge.config import load_search_config
    from kdforge.tracking.promote import latest_version, promote_version
    from kdforge.tracking.store import check_tracking_uri, resolve_tracking_uri

    folder = Path(target)
    summary: dict[str, Any] = {}
    if folder.is_dir():
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            raise ConfigError(
                f"{folder} has no summary.json: the search did not register a student",
                hint="pass a finished search folder, or a registered model name with --version",
            )
        summary = json.loads(summary_file.read_text())
        if not summary.get("registered_model_name"):
            raise ConfigError(f"{summary_file} names no registered model (export was disabled?)")
        name = str(summary["registered_model_name"])
        version = version or str(summary.get("registered_model_version") or "") or None
        config_path = config_path or str(folder / "config.yaml")
    else:
        name = target
    config = load_search_config(config_path) if config_path else None
    uri = resolve_tracking_uri(
        tracking_uri or summary.get("tracking_uri") or (config.tracking.uri if config else None)
    )
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    test = None
    if if_better:
        if config is None:
            raise ConfigError(
                "--if-better needs the search config whose test split both versions run on",
                hint="pass --config SEARCH.yaml, or give a search folder instead of a model name",
            )
        from kdforge.plugin_host.resolve import instantiate

        test = instantiate("dataset", config.dataset, "dataset").load(config.seed).test
    chosen = str(version) if version else latest_version(name)
    result = promote_version(
        name, chosen, alias=alias, policy="if_better" if if_better else "always", test=test
    )
    if result.promoted:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        text = client.get_model_version(name, chosen).description or ""
        client.update_registered_model(name, description=f"@{alias}: version {chosen}.\n\n{text}")
    emit(result.line())
    return result


def _cmd_report(args: argparse.Namespace) -> int:
    from kdforge.report.render import report_search_dir

    report_search_dir(args.search_dir)
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    promote_command(
        args.target,
        version=args.version,
        alias=args.alias,
        if_better=args.if_better,
        config_path=args.config,
        tracking_uri=args.tracking_uri,
    )
    return 0


def add_tracking_commands(sub: Any) -> None:
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
