"""The floor under a search's fixed cost: what Ray Tune, MLflow and torch cost by themselves.

``search_overhead.py`` measures kdforge's fixed cost per search; this script measures,
side by side in one run, how much of it the stack kdforge is built on costs before
kdforge does anything, so that a target for the fixed cost can be checked against what
the stack allows. Each row is a fresh process timed from its start to its exit; the
rows run alternately, ``--rounds`` times, and the median (min-max) is printed:

* **python**: ``python -c pass``;
* **import torch**, **import ray + ray.tune**, **import mlflow + its SQL store**: the
  three libraries a search driver needs, one per process;
* **driver imports**: the three (and optuna) in one process, as a search driver imports
  them: imports run one after another under the GIL;
* **import torch + its first optimizer step**: a process that imports torch and takes
  one AdamW step on a 4-2 linear layer (the first step imports ``torch._dynamo``), as
  every trial worker and every plain training process does once;
* **bare Tune, own Ray**: ``ray.init`` starting a local Ray (no dashboard, as kdforge
  does), a ``tune.Tuner`` running ``--trials`` trials, one per CPU at a time (``reuse_actors``,
  no Tune loggers, kdforge's Tune settings) that each take that one optimizer step, then
  ``ray.shutdown``. No MLflow, no data, no kdforge: the least a search whose trials
  train costs when Ray Tune runs it;
* **bare Tune, joins a running Ray**: the same, joining a local Ray started once
  beforehand with ``kdforge ray start``'s settings (its start is printed, not counted);
* **bare Tune, joins a Ray with torch preloaded**: the same against a Ray started with
  ``RAY_preload_python_modules=torch`` (Ray's prestarted workers import torch before
  taking work: the "prestarted workers" lever);
* **kdforge search, own Ray** and **joins `kdforge ray start`**: the real
  ``kdforge search`` of the same number of students, 1 epoch each on ``--rows`` generated
  rows (the trials train for a few hundredths of a second), cached teacher outputs, a new
  SQLite store from kdforge's template, export and the distillation-gain retraining off
  (the ``search_overhead.py`` config).

The kdforge rows are then (almost) all fixed cost; the bare Tune rows are the part of
it that Ray Tune itself costs. Usage::

    python benchmarks/search_floor.py [--rounds 3] [--trials 8] [--rows 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# A sibling script: the same data and search config.
from search_overhead import (
    _header,
    make_data,
    search_config,
    warm_teacher_cache,
)

_IMPORTS = {
    "python": "pass",
    "import torch": "import torch",
    "import torch + its first optimizer step": (
        "import torch; m = torch.nn.Linear(4, 2); "
        "o = torch.optim.AdamW(m.parameters(), fused=True); m(torch.ones(1, 4)).sum().backward(); "
        "o.step()"
    ),
    "import ray + ray.tune": "import ray; from ray import tune",
    "import mlflow + its SQL store": (
        "import mlflow; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore"
    ),
    "driver imports (the three + optuna, one process)": (
        "import torch, optuna, ray; from ray import tune; import mlflow; "
        "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore"
    ),
}

# A Tune run with nothing of kdforge: trials that take one optimizer step, the least a
# training trial does (torch's first optimizer step imports torch._dynamo).
_BARE_TUNE = """
import sys, ray
from ray import tune

def trial(config):
    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    tune.report({"score": float(config["i"])})

address, trials, concurrent, storage = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
ray.init(address=address or None, **kwargs)
tune.Tuner(
    tune.with_resources(trial, {"cpu": 1}),
    param_space={"i": tune.grid_search(list(range(trials)))},
    tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True),
    run_config=tune.RunConfig(storage_path=storage, verbose=0),
).fit()
ray.shutdown()
"""


def _wall(command: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from the start of ``command`` to its exit (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall


def _start_ray(cache: Path, port: int, env: dict[str, str]) -> tuple[str, float]:
    """``kdforge ray start`` (its settings, a cache folder of its own); address, seconds."""
    from kdforge.cluster.ray_init import start_shared_ray

    with mock.patch.dict(os.environ, {"KDFORGE_CACHE_DIR": str(cache), **env}):
        started = time.perf_counter()
        address = start_shared_ray(port=port)
        return address, time.perf_counter() - started


def _stop_ray(cache: Path) -> None:
    from kdforge.cluster.ray_init import stop_shared_ray

    with mock.patch.dict(os.environ, {"KDFORGE_CACHE_DIR": str(cache)}):
        stop_shared_ray()


def measure(rounds: int, trials: int, rows: int) -> dict[str, list[float]]:
    """Run every row ``rounds`` times, alternately; their wall times by row."""
    from kdforge.search.driver import TUNE_ENVIRONMENT

    cpus = os.cpu_count() or 1
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kdforge-floor-") as tmp:
        folder = make_data(rows, Path(tmp))
        config = search_config(folder, trials, 1, 64, None)
        config["search"]["grace_period"] = 1
        (folder / "search.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        warm_teacher_cache(folder / "search.yaml")
        # The ``kdforge ray start`` Rays; the own-Ray rows use a cache folder without one.
        auth = {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        joined_cache, preload_cache, own_cache = (folder / n for n in ("c1", "c2", "c3"))
        joined, joined_s = _start_ray(joined_cache, 6395, auth)
        preload, preload_s = _start_ray(
            preload_cache, 6396, {**auth, "RAY_preload_python_modules": "torch"}
        )
        print(
            f"`kdforge ray start` (not counted below): {joined_s:.2f} s; "
            f"with torch preloaded: {preload_s:.2f} s"
        )
        kdforge = str(Path(sys.executable).with_name("kdforge"))
        tune_env = {**TUNE_ENVIRONMENT, **auth}
        kdforge_arms = (("own Ray", own_cache), ("joins `kdforge ray start`", joined_cache))

        def kdforge_run(tag: str, cache: Path) -> tuple[list[str], dict[str, str]]:
            run = {**config, "output_dir": str(folder / f"runs-{tag}-{cache.name}")}
            db = folder / f"mlflow-{tag}-{cache.name}.db"
            run["tracking"] = {"uri": f"sqlite:///{db}", "experiment": "floor"}
            path = folder / f"search-{tag}-{cache.name}.yaml"
            path.write_text(yaml.safe_dump(run, sort_keys=False))
            return [kdforge, "search", str(path)], {"KDFORGE_CACHE_DIR": str(cache), **auth}

        try:
            # Each cache folder's empty-store template is made once, as on any machine.
            for _, cache in kdforge_arms:
                _wall(*kdforge_run("warm", cache))
            for index in range(rounds):
                rows_of_round: dict[str, tuple[list[str], dict[str, str]]] = {
                    name: ([sys.executable, "-c", code], {}) for name, code in _IMPORTS.items()
                }
                bare = [sys.executable, "-c", _BARE_TUNE]
                args = [str(trials), str(cpus), str(folder / f"tune-{index}")]
                rows_of_round["bare Tune, own Ray"] = ([*bare, "", *args], tune_env)
                rows_of_round["bare Tune, joins a running Ray"] = ([*bare, joined, *args], tune_env)
                rows_of_round["bare Tune, joins a Ray with torch preloaded"] = (
                    [*bare, preload, *args],
                    tune_env,
                )
                for tag, cache in kdforge_arms:
                    rows_of_round[f"kdforge search, {tag}"] = kdforge_run(f"{index}", cache)
                for name, (command, env) in rows_of_round.items():
                    times.setdefault(name, []).append(_wall(command, env))
                line = " ".join(f"[{i}] {v[-1]:.2f}" for i, v in enumerate(times.values(), 1))
                print(f"round {index}: {line}", flush=True)
        finally:
            _stop_ray(joined_cache)
            _stop_ray(preload_cache)
    return times


def report(times: dict[str, list[float]], trials: int, target: float) -> None:
    """Print the medians and what they mean for a fixed-cost target."""
    median = {name: statistics.median(v) for name, v in times.items()}
    print(
        f"\nmedian (min-max) of {len(next(iter(times.values())))} rounds, seconds "
        f"from process start to exit; {trials} trials, {os.cpu_count()} at a time"
    )
    for number, (name, values) in enumerate(times.items(), 1):
        print(f"  [{number}] {name:50s} {median[name]:6.2f}  ({min(values):.2f}-{max(values):.2f})")
    own, joined = median["bare Tune, own Ray"], median["bare Tune, joins a running Ray"]
    preload = median["bare Tune, joins a Ray with torch preloaded"]
    imports = median["driver imports (the three + optuna, one process)"]
    kd_own = median["kdforge search, own Ray"]
    kd_joined = median["kdforge search, joins `kdforge ray start`"]
    # Lower bounds: a search does at least what bare Tune does, and its driver imports
    # at least these libraries (serially, under the GIL) however the rest overlaps.
    floor_own, floor_joined = max(own, imports), max(joined, imports)
    print(
        f"\nfloor of a search (a lower bound: the larger of bare Tune and the driver's "
        f"imports): {floor_own:.2f} s with its own Ray, {floor_joined:.2f} s joining a "
        f"running one (bare Tune there: {joined:.2f} s; {preload:.2f} s with torch "
        "preloaded in Ray's workers)"
    )
    print(
        f"kdforge search of {trials} one-epoch trials: {kd_own:.2f} s with its own Ray, "
        f"{kd_joined:.2f} s joined; above the floor: {kd_own - floor_own:.2f} s, "
        f"{kd_joined - floor_joined:.2f} s (config, data, MLflow's writes, the trials' "
        "kdforge imports and payload, reports, plots)"
    )
    # Not a bound (the imports may overlap Tune's waiting), but where kdforge's share is:
    # bare Tune plus the libraries the driver imports besides Ray.
    others = imports - median["import ray + ray.tune"]
    print(
        f"bare Tune + the driver's other imports (torch, optuna, mlflow: {others:.2f} s), "
        f"if nothing overlapped: {own + others:.2f} s own Ray, {joined + others:.2f} s "
        f"joined; kdforge above that: {kd_own - own - others:.2f} s, "
        f"{kd_joined - joined - others:.2f} s"
    )
    for label, floor in (("its own Ray", floor_own), ("a joined Ray", floor_joined)):
        room = target - floor
        verdict = (
            f"below the floor by {-room:.2f} s" if room < 0 else f"{room:.2f} s above the floor"
        )
        print(f"target fixed cost {target:.2f} s with {label}: {verdict}")


def main() -> None:
    """Parse the arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--target", type=float, default=5.0, help="fixed cost target, s")
    args = parser.parse_args()
    _header()
    report(measure(args.rounds, args.trials, args.rows), args.trials, args.target)


if __name__ == "__main__":
    main()
