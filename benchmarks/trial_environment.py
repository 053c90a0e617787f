"""The same training, in a plain process and inside a Ray Tune trial: what the trial costs.

``search_overhead.py`` finds a kdforge trial's training slower than the same student in
the plain loop. This script separates the two possible causes, side by side in one run:
kdforge's trainer against the hand-written loop, and a Ray Tune trial's process against
a plain process. The same student (an MLP of the ``mlp`` space, 64-128-64-10, no
dropout), data (generated, as in ``search_overhead.py``), teacher logits and
``hinton_kd`` at T=4, alpha=0.5, batch 64, one torch thread, is trained ``--repeats``
times in a row in each of two processes running at once (one per core), four ways:

* **plain loop, plain process**: ``search_overhead.plain_trial`` in a Python process;
* **kdforge trainer, plain process**: :func:`kdforge.training.trainer.train_model`, as
  ``trainer_step.py`` calls it;
* **plain loop, Tune trial** and **kdforge trainer, Tune trial**: the same, inside a
  Ray Tune function trial (``tune.Tuner``, two trials at a time on a local Ray), which
  runs the function in a thread of a Ray worker process.

Each process's first run imports ``torch._dynamo`` (torch's first optimizer step) and is
left out; the median of the later runs is printed, and the ratios between the arms.
Usage::

    python benchmarks/trial_environment.py [--rows 40000] [--epochs 4] [--repeats 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_overhead import _header, archs, make_data

_ARCH = {**archs(4)[3], "dropout": 0.0}  # depth 2, widths 128 and 64


def train_runs(folder: str, trainer: str, epochs: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` trainings in a row in this process (one torch thread)."""
    import numpy as np
    import torch
    import trainer_step
    from search_overhead import plain_trial

    torch.set_num_threads(1)
    arrays = np.load(Path(folder) / "data.npz")
    data = {key: torch.from_numpy(arrays[key]) for key in arrays.files}
    data["teacher"] = torch.from_numpy(np.load(Path(folder) / "teacher_logits.npy"))
    trainer_step._ARCH = _ARCH
    if trainer == "kdforge":
        return [trainer_step.kdforge_trial(data, epochs) for _ in range(repeats)]
    return [plain_trial(i, _ARCH, data, epochs, 64, "fused")["seconds"] for i in range(repeats)]


def in_processes(folder: Path, trainer: str, epochs: int, repeats: int) -> list[list[float]]:
    """``train_runs`` in two plain processes at once."""
    command = [sys.executable, __file__, "--worker", str(folder), "--trainer", trainer]
    command += ["--epochs", str(epochs), "--repeats", str(repeats)]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return [json.loads(child.communicate()[0].splitlines()[-1]) for child in children]


def in_tune(folder: Path, trainer: str, epochs: int, repeats: int) -> list[list[float]]:
    """``train_runs`` in two Ray Tune function trials at once, on a local Ray."""
    from ray import tune

    bench = str(Path(__file__).resolve().parent)

    def trial(config: dict[str, int]) -> None:
        sys.path.insert(0, bench)
        import trial_environment

        runs = trial_environment.train_runs(str(folder), trainer, epochs, repeats)
        tune.report({"runs": json.dumps(runs)})

    results = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space={"i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(folder / f"tune-{trainer}"), verbose=0),
    ).fit()
    return [json.loads(result.metrics["runs"]) for result in results]


def main() -> None:
    """Parse the arguments, run the four arms, print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--trainer", default="plain", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(train_runs(args.worker, args.trainer, args.epochs, args.repeats)))
        return
    import ray

    from kdforge.search.driver import TUNE_ENVIRONMENT

    _header()
    for key, value in TUNE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="kdforge-trial-env-") as tmp:
        folder = make_data(args.rows, Path(tmp))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        arms: dict[str, list[list[float]]] = {}
        for trainer in ("plain", "kdforge"):
            arms[f"{trainer}, plain process"] = in_processes(
                folder, trainer, args.epochs, args.repeats
            )
            arms[f"{trainer}, Tune trial"] = in_tune(folder, trainer, args.epochs, args.repeats)
        ray.shutdown()
    print(
        f"\n{args.rows} rows x {args.epochs} epochs, batch 64, 64-128-64-10 student, "
        f"2 at a time, {args.repeats} runs each; median of the runs after each process's first"
    )
    median = {}
    for name, per_process in arms.items():
        median[name] = statistics.median(run for runs in per_process for run in runs[1:])
        shown = "; ".join(", ".join(f"{run:.2f}" for run in runs) for runs in per_process)
        print(f"  {name:26s} {median[name]:.3f} s   (all runs: {shown})")
    plain = median["plain, plain process"]
    print(
        f"kdforge trainer / plain loop: {median['kdforge, plain process'] / plain:.3f} in "
        f"plain processes, {median['kdforge, Tune trial'] / median['plain, Tune trial']:.3f} "
        "in Tune trials"
    )
    print(
        f"Tune trial / plain process: {median['plain, Tune trial'] / plain:.3f} for the plain "
        f"loop, {median['kdforge, Tune trial'] / median['kdforge, plain process']:.3f} for "
        "kdforge's trainer"
    )


if __name__ == "__main__":
    main()
