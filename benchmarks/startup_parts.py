"""The two largest fixed costs of a quick search, each measured the old and the new way.

In fresh processes, alternating, ``--rounds`` times (the median is printed):

* **Ray**: ``ray.init()`` starting a new local Ray (what a search does by default)
  against joining a local Ray started once by ``kdforge ray start``
  (``kdforge.cluster.ray_init``), each followed by one task round trip;
* **MLflow store**: MLflow creating a new SQLite store itself (its schema migrations)
  and the experiment, against kdforge's ``setup_experiment`` on a new store copied from
  the empty-store template (``kdforge.tracking.sqlite_template``; made once before the
  rounds, its one-time cost printed).

Imports are not timed (each process imports first, then times the step). Usage::

    python benchmarks/startup_parts.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_RAY = """
import sys, time, ray
address = sys.argv[1] if len(sys.argv) > 1 else None
started = time.perf_counter()
ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())
print("T", time.perf_counter() - started)
"""
_MLFLOW = """
import sys, time
from mlflow.tracking import MlflowClient
started = time.perf_counter()
MlflowClient("sqlite:///" + sys.argv[1]).create_experiment("x")
print("T", time.perf_counter() - started)
"""
_KDFORGE = """
import sys, time
import mlflow
from kdforge.tracking.store import setup_experiment
started = time.perf_counter()
setup_experiment("sqlite:///" + sys.argv[1], "x")
print("T", time.perf_counter() - started)
"""


def _timed(code: str, *args: str, env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return float(next(ln for ln in done.stdout.splitlines() if ln.startswith("T ")).split()[1])


def main() -> None:
    """Measure both pairs and print the medians and ratios."""
    from kdforge.cluster.ray_init import start_shared_ray, stop_shared_ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"$ python benchmarks/startup_parts.py --rounds {args.rounds}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average {load} at "
        "the start (a shared machine: compare the pairs, measured alternately, not runs)"
    )
    with tempfile.TemporaryDirectory(prefix="kdforge-startup-") as tmp:
        folder = Path(tmp)
        env = {"KDFORGE_CACHE_DIR": str(folder / "cache")}
        os.environ.update(env)
        started = time.perf_counter()
        template = _timed(_KDFORGE, str(folder / "first.db"), env=env)
        print(f"first new store (makes the template once): {template:.2f} s")
        started = time.perf_counter()
        address = start_shared_ray()
        print(f"kdforge ray start (once): {time.perf_counter() - started:.2f} s")
        times: dict[str, list[float]] = {k: [] for k in ("new", "join", "mlflow", "template")}
        try:
            for r in range(args.rounds):
                times["new"].append(_timed(_RAY, env=env))
                times["join"].append(_timed(_RAY, address, env=env))
                times["mlflow"].append(_timed(_MLFLOW, str(folder / f"m{r}.db"), env=env))
                times["template"].append(_timed(_KDFORGE, str(folder / f"k{r}.db"), env=env))
                print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        finally:
            stop_shared_ray()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {args.rounds} rounds:")
    print(
        f"  Ray: new local {med['new']:.2f} s, join `kdforge ray start` {med['join']:.2f} s "
        f"(saves {med['new'] - med['join']:.2f} s, x{med['new'] / med['join']:.1f})"
    )
    print(
        f"  new SQLite store + experiment: MLflow's migrations {med['mlflow']:.2f} s, from the "
        f"template {med['template']:.2f} s (saves {med['mlflow'] - med['template']:.2f} s, "
        f"x{med['mlflow'] / med['template']:.1f})"
    )


if __name__ == "__main__":
    main()
