"""The ``kdforge`` command line.

Each group of commands is a module that adds its subcommands to the parser
(:mod:`~kdforge.cli.search`, :mod:`~kdforge.cli.teacher`, :mod:`~kdforge.cli.plugins`,
:mod:`~kdforge.cli.deploy`, :mod:`~kdforge.cli.tracking`, :mod:`~kdforge.cli.cluster`). A
command imports its implementation when it runs, so ``kdforge --help`` or ``kdforge
plugins`` never wait for Ray, MLflow or Optuna to import: this is the one place in
kdforge where a kdforge module is imported inside a function.

Errors of the kdforge family print one line (plus a hint) and exit 2; anything else
exits 1 with a pointer to ``--debug``, which shows the traceback.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from collections.abc import Sequence

from kdforge import progress
from kdforge.cli import cluster, deploy, plugins, search, teacher, tracking
from kdforge.errors import KDForgeError, disk_full_error

__all__ = ["build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kdforge`` command."""
    parser = argparse.ArgumentParser(
        prog="kdforge",
        description="Search the smallest student that keeps the teacher's accuracy.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bars or progress lines (steps and results still print)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    search.add_commands(sub)  # search, resume
    teacher.add_commands(sub)  # train-teacher
    plugins.add_commands(sub)  # plugins, new-plugin
    deploy.add_commands(sub)  # serve, quantize
    tracking.add_commands(sub)  # report, promote
    cluster.add_commands(sub)  # ray start, ray stop, ray status
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kdforge`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        progress.configure(quiet=True)
    try:
        return int(args.func(args))
    except KDForgeError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # A search says where it stopped and how to resume it.
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        full = disk_full_error(exc)  # wherever the disk filled, it is said so, in one line
        if full is not None:
            print(f"error: {full}\nhint: {full.hint}", file=sys.stderr)
            return full.exit_code
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: run again with --debug for the traceback", file=sys.stderr)
        return 1


def run() -> None:
    """The ``kdforge`` console command: :func:`main`, then exit without teardown.

    Once a search is done, Python's teardown of the modules it loaded (torch, Ray,
    MLflow) takes another 1-1.5 s on a small machine and does nothing a user needs.
    The exit handlers (Ray, MLflow, logging, multiprocessing, weakref finalizers)
    still run and the output is flushed; only the module teardown is skipped, and not
    when another thread is still working.
    """
    code = main()
    busy = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    # Python has no public call that runs the exit handlers before os._exit, and a
    # handler registered with atexit would run before those registered earlier
    # (logging, multiprocessing, weakref finalizers) and skip them. So the private
    # atexit._run_exitfuncs is used where it exists (CPython 3.x);
    # tests/test_private_apis.py fails loudly if it goes away.
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if busy or run_exit_handlers is None:
        sys.exit(code)
    run_exit_handlers()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
