"""The same search with and without the teacher cache, on a teacher much bigger than the students.

The teacher is an ensemble of wide MLPs on digits (millions of parameters; the
students of the ``mlp`` space have a few thousand). Three kinds of runs, side by side
in one process, sharing one local Ray instance:

* **no cache** (``teacher_cache.enabled: false``): the teacher runs in every search;
* **cold cache**: the first search with the cache computes and stores the outputs;
* **warm cache**: a later search reads them (zero teacher forward calls).

It prints the wall time of each whole search (best of ``--repeats``), of the
teacher-output step alone, and their ratios to the no-cache run. Usage::

    python benchmarks/teacher_cache.py [--members 3] [--width 2048] [--trials 4] [--epochs 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.checkpoint import save_checkpoint
from kdforge.config import SearchConfig
from kdforge.plugins.datasets.digits import Digits
from kdforge.search.driver import run_search
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.training.trainer import TrainSettings, train_model


def _teachers(folder: Path, members: int, width: int) -> tuple[list[Path], int]:
    splits = Digits().load(0)
    paths, params = [], 0
    for i in range(members):
        arch = {"depth": 3, "width_0": width, "width_1": width, "width_2": width // 2}
        torch.manual_seed(i)
        model = MLPSpace().build({**arch, "dropout": 0.1}, splits.info)
        settings = TrainSettings(epochs=2, lr=1e-3, seed=i, batch_size=128)
        train_model(
            model,
            x=splits.train.x,
            y=splits.train.y,
            val_x=splits.val.x,
            val_y=splits.val.y,
            settings=settings,
        )
        params += sum(p.numel() for p in model.parameters())
        path = folder / f"member{i}.pt"
        save_checkpoint(
            path, space="mlp", arch={**arch, "dropout": 0.1}, info=splits.info, model=model
        )
        paths.append(path)
    return paths, params


def _config(folder: Path, members: list[Path], args: argparse.Namespace, cache: bool) -> Any:
    return SearchConfig.model_validate(
        {
            "name": "cache-bench",
            "output_dir": str(folder / "runs"),
            "dataset": {"name": "digits", "params": {"transfer_fraction": 0.5}},
            "teacher": {
                "name": "ensemble",
                "params": {
                    "members": [{"name": "checkpoint", "params": {"path": str(p)}} for p in members]
                },
            },
            "student": {"name": "mlp", "params": {"max_depth": 2, "max_width": 32}},
            "search": {
                "num_trials": args.trials,
                "epochs": args.epochs,
                "grace_period": args.epochs,
                "max_concurrent": 2,
            },
            "baseline": {"enabled": False},
            "export": {"enabled": False},
            "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
            "teacher_cache": {"enabled": cache, "dir": str(folder / "cache")},
        }
    )


def _search(config: Any) -> tuple[float, float, int]:
    """Wall time of the whole search, of its teacher step, and teacher forward calls."""
    marks: dict[str, float] = {}

    def emit(line: str) -> None:
        if line.startswith("kdforge search"):
            marks["start"] = time.perf_counter()
        elif line.startswith("teacher ") and "params, val_acc=" in line:
            marks["teacher"] = time.perf_counter()

    started = time.perf_counter()
    result = run_search(config, emit=emit)
    total = time.perf_counter() - started
    return total, marks["teacher"] - marks["start"], int(result.summary["teacher_forward_calls"])


def main() -> None:
    """Build the teacher, run the three kinds of searches, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    folder = Path(tempfile.mkdtemp(prefix="kdforge-cache-bench-"))
    try:
        members, teacher_params = _teachers(folder, args.members, args.width)
        print(
            f"teacher: ensemble of {args.members} MLPs, {teacher_params:,} params; students: mlp "
            f"max_width 32 (<= ~3k params); {args.trials} trials x {args.epochs} epochs"
        )
        _search(_config(folder, members, args, cache=False))  # warm-up: MLflow store, imports
        times: dict[str, list[tuple[float, float, int]]] = {"no cache": [], "cold": [], "warm": []}
        for _ in range(args.repeats):
            times["no cache"].append(_search(_config(folder, members, args, cache=False)))
            shutil.rmtree(folder / "cache", ignore_errors=True)
            times["cold"].append(_search(_config(folder, members, args, cache=True)))
            times["warm"].append(_search(_config(folder, members, args, cache=True)))
        base_total = min(t[0] for t in times["no cache"])
        base_teacher = min(t[1] for t in times["no cache"])
        print("run          search s  ratio   teacher step s  ratio   teacher calls")
        for name, runs in times.items():
            total = min(t[0] for t in runs)
            step = min(t[1] for t in runs)
            calls = runs[-1][2]
            print(
                f"{name:<11} {total:>9.1f}  {total / base_total:>5.2f}x  {step:>13.2f}  "
                f"{step / base_teacher:>5.2f}x  {calls:>13}"
            )
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
