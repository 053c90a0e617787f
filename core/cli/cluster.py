"""``kdforge ray start|stop|status``: a local Ray that later commands join.

A search starts its own local Ray by default (nothing to start first); one kept
running with ``kdforge ray start`` saves each later search Ray's start-up (~5 s on a
small machine; ``benchmarks/search_overhead.py``). See docs/scale.md.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def _cmd_start(args: argparse.Namespace) -> int:
    from kdforge.cluster.ray_init import shared_ray_address, start_shared_ray

    running = shared_ray_address()
    address = start_shared_ray(num_cpus=args.num_cpus, port=args.port)
    state = "already running" if running else "started"
    print(f"local Ray {state} at {address}; kdforge commands join it until `kdforge ray stop`")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from kdforge.cluster.ray_init import stop_shared_ray

    print("stopped the local Ray" if stop_shared_ray() else "no local Ray started by kdforge")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from kdforge.cluster.ray_init import shared_ray_address

    address = shared_ray_address()
    print(f"local Ray at {address}" if address else "no local Ray (each search starts its own)")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``ray start``, ``ray stop`` and ``ray status`` to the CLI's subcommands."""
    ray = sub.add_parser("ray", help="keep a local Ray running for later commands to join")
    actions = ray.add_subparsers(dest="ray_command", required=True)
    start = actions.add_parser("start", help="start a local Ray that later searches join")
    start.add_argument("--num-cpus", type=int, help="CPUs it offers (default: all)")
    start.add_argument("--port", type=int, default=6390, help="its GCS port (default 6390)")
    start.set_defaults(func=_cmd_start)
    actions.add_parser("stop", help="stop it").set_defaults(func=_cmd_stop)
    actions.add_parser("status", help="say whether one is running").set_defaults(func=_cmd_status)
