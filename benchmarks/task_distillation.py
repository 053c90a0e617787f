"""Distillation beyond classification: regression and multilabel, through a real search.

For each task the script generates its data, writes it as one ``.npz`` (read by the
``arrays`` dataset with ``task: regression`` / ``task: multilabel``), trains a wide MLP
teacher with :func:`kdforge.teacher.train_teacher.train_teacher` on the labeled training
rows, and runs a real :func:`kdforge.search.driver.run_search` (Ray Tune + Optuna,
MLflow in a temporary SQLite file) over small ``mlp`` students, with its baseline on.

* **regression**: scikit-learn's Friedman #1 (10 uniform features, 5 used, noise sd 1)
  plus two more nonlinear targets of the same rows (a Gaussian bump times a cosine
  ridge, noise sd 0.5; a product plus a sine, noise sd 0.5): 3 targets. Metric R²
  (averaged over the targets), RMSE in the targets' own units.
* **multilabel**: ``make_multilabel_classification`` (40 count features, log1p and
  standardised on the training rows; 10 labels, 3 per row on average). Metric mAP
  (macro average precision).

Setting: ``--rows`` labeled training rows, and ``--transfer`` times as many rows whose
labels are withheld (``x_transfer`` in the ``.npz``: the ``transfer`` split). The
teacher never sees the transfer rows (``train-teacher`` trains on labeled rows only);
the distilled students learn the teacher's predictions there. Validation and test rows
are labeled and the same for everyone.

Per task it prints the teacher's test metric and parameters, the chosen student's
parameters and compression (teacher / student parameters), and the search baseline's
``--seeds`` distilled and scratch runs of the chosen architecture (mean ± sd). The
baseline's scratch side trains on the labeled rows for the same epochs, which with a
transfer split is fewer optimizer steps than the distilled side. So the script also
trains the chosen architecture from scratch itself with **the same optimizer steps**
(more epochs over the labeled rows; the same learning rate, batch size, weight decay
and seeds as the baseline) and takes the gap recovered against that:
``(distilled - scratch) / (teacher - scratch)`` (R² and mAP: higher is better). For
regression the RMSE of the same-steps scratch runs and of the exported student (ONNX
Runtime, the search's chosen trial) are printed in the targets' units.

Usage::

    RAY_AUTH_MODE=disabled python -u benchmarks/task_distillation.py \
        [--trials 8] [--epochs 30] [--seeds 3] [--rows 1000] [--transfer 4]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import make_friedman1, make_multilabel_classification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.config import DatasetRef, PluginRef, SearchConfig, TeacherConfig
from kdforge.interfaces import Task
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search.driver import SearchResult, run_search
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.teacher.outputs import training_inputs
from kdforge.teacher.train_teacher import train_teacher
from kdforge.training.evaluate import predict_logits
from kdforge.training.trainer import TrainSettings, train_model

VAL_ROWS = 500
TEST_ROWS = 2000
BATCH = 64
WEIGHT_DECAY = 1e-4  # SearchSettings' default, used by the baseline

#: Per task: the teacher (a wide MLP), its training, and the student space (tiny MLPs).
SETUP: dict[str, dict[str, Any]] = {
    "regression": {
        "teacher": {"depth": 3, "width_0": 512, "width_1": 512, "width_2": 256, "dropout": 0.0},
        "teacher_epochs": 60,
        "student": {"min_depth": 1, "max_depth": 2, "min_width": 4, "max_width": 16},
        "metric": "r2",
    },
    "multilabel": {
        "teacher": {"depth": 2, "width_0": 1024, "width_1": 1024, "dropout": 0.5},
        "teacher_epochs": 20,
        "student": {"min_depth": 1, "max_depth": 2, "min_width": 4, "max_width": 12},
        "metric": "map",
    },
}


def _split(x: np.ndarray, y: np.ndarray, rows: int, transfer: int) -> dict[str, np.ndarray]:
    """Given splits for the ``.npz``: train, transfer (no labels), val, test, in order."""
    cuts = np.cumsum([rows, transfer, VAL_ROWS])
    out = {
        "x_train": x[: cuts[0]],
        "y_train": y[: cuts[0]],
        "x_transfer": x[cuts[0] : cuts[1]],
        "x_val": x[cuts[1] : cuts[2]],
        "y_val": y[cuts[1] : cuts[2]],
        "x_test": x[cuts[2] :],
        "y_test": y[cuts[2] :],
    }
    if not transfer:
        del out["x_transfer"]
    return out


def regression_data(rows: int, transfer: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Friedman #1 plus two more nonlinear targets of the same 10 features."""
    n = rows + transfer + VAL_ROWS + TEST_ROWS
    x, y0 = make_friedman1(n_samples=n, n_features=10, noise=1.0, random_state=seed)
    rng = np.random.default_rng(seed + 1)
    bump = 8 * np.exp(-8 * ((x[:, 0] - 0.5) ** 2 + (x[:, 5] - 0.5) ** 2))
    y1 = bump + 3 * np.cos(3 * np.pi * x[:, 6] * x[:, 7]) + rng.normal(0, 0.5, n)
    y2 = 10 * x[:, 1] * x[:, 2] + 5 * np.sin(2 * np.pi * x[:, 8]) * x[:, 9] + rng.normal(0, 0.5, n)
    y = np.stack([y0, y1, y2], axis=1).astype(np.float32)
    return _split(((x - 0.5) / 0.29).astype(np.float32), y, rows, transfer)


def multilabel_data(rows: int, transfer: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``make_multilabel_classification``: 40 count features, 10 labels."""
    n = rows + transfer + VAL_ROWS + TEST_ROWS
    x, y = make_multilabel_classification(
        n_samples=n, n_features=40, n_classes=10, n_labels=3, length=60, random_state=seed
    )
    x = np.log1p(x)
    x = (x - x[:rows].mean(0)) / x[:rows].std(0)  # training rows' statistics only
    return _split(x.astype(np.float32), y.astype(np.float32), rows, transfer)


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(values: list[float]) -> str:
    mean, sd = _stats(values)
    return f"{mean:.4f} +- {sd:.4f}"


def _named(summary: dict[str, Any], key: str, metric: str) -> Any:
    """``summary[key]`` whether the summary's keys say ``acc`` or the task's metric."""
    return summary.get(key.replace("acc", metric), summary.get(key))


def scratch_same_steps(
    dataset: DatasetRef, kind: str, result: SearchResult, epochs: int, seeds: int
) -> tuple[list[dict[str, float]], int, int, int]:
    """The chosen architecture from scratch with the distilled runs' optimizer steps.

    Returns per-seed test metrics, the distilled steps, the scratch steps and epochs.
    """
    assert result.best is not None and result.best.lr is not None
    splits = instantiate("dataset", dataset, "dataset").load(dataset.split_seed)
    task: Task = instantiate("task", PluginRef(name=kind), "task")
    task.check(splits)
    splits = task.prepare(splits)
    both = training_inputs(splits)  # what the distilled runs iterate over
    distilled_steps = epochs * math.ceil(len(both.x) / BATCH)
    per_epoch = math.ceil(len(splits.train) / BATCH)
    scratch_epochs = math.ceil(distilled_steps / per_epoch)
    runs = []
    for s in range(seeds):
        seed = 1000 + s  # the baseline's seeds
        torch.manual_seed(seed)
        model = MLPSpace().build(dict(result.best.arch), splits.info)
        train_model(
            model,
            x=splits.train.x,
            y=splits.train.y,
            val_x=splits.val.x,
            val_y=splits.val.y,
            settings=TrainSettings(
                epochs=scratch_epochs,
                lr=result.best.lr,
                batch_size=BATCH,
                weight_decay=WEIGHT_DECAY,
                seed=seed,
            ),
            task=task,
        )
        runs.append(task.metrics(predict_logits(model, splits.test.x), splits.test.y))
    return runs, distilled_steps, scratch_epochs * per_epoch, scratch_epochs


def teacher_rmse(path: str, x: np.ndarray, y: np.ndarray) -> float:
    """RMSE (targets' units) of the teacher checkpoint, rebuilt with its task's head."""
    teacher = CheckpointTeacher(CheckpointTeacher.Params(path=path))
    teacher.load()
    logits = teacher.predict(torch.from_numpy(x)).logits
    assert logits is not None
    pred = logits.numpy()
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def onnx_rmse(search_dir: Path, x: np.ndarray, y: np.ndarray) -> float | None:
    """RMSE (targets' units) of the exported student on the test rows, or None."""
    found = sorted(search_dir.rglob("*.onnx"))
    if not found:
        return None
    import onnxruntime as ort

    session = ort.InferenceSession(str(found[0]), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pred = session.run(None, {name: x.astype(np.float32)})[0]
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def run_task(kind: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Teacher, search and same-steps scratch for one task; print its lines."""
    setup = SETUP[kind]
    metric = setup["metric"]
    transfer = args.rows * args.transfer
    make = regression_data if kind == "regression" else multilabel_data
    arrays = make(args.rows, transfer)
    path = folder / f"{kind}.npz"
    np.savez(path, **dict[str, Any](arrays))
    names = [
        f"{'y' if kind == 'regression' else 'label'}{i}" for i in range(arrays["y_train"].shape[1])
    ]
    dataset = {"name": "arrays", "params": {"path": str(path), "task": kind, "target_names": names}}
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    quiet: list[str] = []
    started = time.perf_counter()
    teacher = train_teacher(
        TeacherConfig.model_validate(
            {
                "name": f"{kind}-teacher",
                "dataset": dataset,
                "architecture": {"name": "mlp", "params": setup["teacher"]},
                "training": {"epochs": setup["teacher_epochs"]},
                "output": str(folder / f"{kind}-teacher.pt"),
                "tracking": {"uri": uri},
            }
        ),
        emit=quiet.append,
    )
    teacher_s = time.perf_counter() - started
    config = SearchConfig.model_validate(
        {
            "name": f"{kind}-students",
            "output_dir": str(folder / "runs"),
            "dataset": dataset,
            "teacher": {"name": "checkpoint", "params": {"path": teacher["path"]}},
            "student": {"name": "mlp", "params": {**setup["student"], "max_dropout": 0.1}},
            "search": {"num_trials": args.trials, "epochs": args.epochs, "batch_size": BATCH},
            "baseline": {"seeds": args.seeds},
            "tracking": {"uri": uri},
        }
    )
    started = time.perf_counter()
    result = run_search(config, emit=quiet.append)
    search_s = time.perf_counter() - started
    if result.best is None:
        print("\n".join(quiet))
        raise SystemExit(f"{kind}: the search finished no trial")
    summary = result.summary
    runs, d_steps, s_steps, s_epochs = scratch_same_steps(
        config.dataset, kind, result, args.epochs, args.seeds
    )
    t_value = teacher[f"test_{metric}"]
    t_params = int(teacher["params"])
    s_params = int(result.best.params) if result.best.params is not None else 0
    distilled = [float(v) for v in _named(summary, "distilled_test_acc_runs", metric)]
    scratch_epochs = [float(v) for v in _named(summary, "scratch_test_acc_runs", metric)]
    scratch = [r[metric] for r in runs]

    def recovered(reference: list[float]) -> float:
        ref = statistics.fmean(reference)
        gap = t_value - ref
        return (statistics.fmean(distilled) - ref) / gap if gap > 0 else float("nan")

    print(
        f"\n== {kind}: {len(arrays['x_train'])} labeled training rows, {transfer} transfer rows "
        f"(labels withheld), {VAL_ROWS} val, {TEST_ROWS} test; metric test {metric}"
    )
    print(
        f"teacher   MLP {setup['teacher']}: {t_params:,} params, test {metric} {t_value:.4f} "
        f"({setup['teacher_epochs']} epochs on the labeled rows, {teacher_s:.0f}s)"
    )
    print(
        f"search    {args.trials} trials x {args.epochs} epochs ({search_s:.0f}s, "
        f"trials {dict(Counter(r.status for r in result.rows))}); "
        f"chosen trial {result.best.trial_id}: mlp {result.best.arch}, lr {result.best.lr:.2e}"
    )
    print(f"student   {s_params:,} params; compression {t_params / max(1, s_params):.1f}x")
    print(
        f"optimizer steps per run: distilled {d_steps} ({args.epochs} epochs over labeled + "
        f"transfer rows); scratch same steps {s_steps} ({s_epochs} epochs over the labeled rows); "
        f"baseline scratch {args.epochs * math.ceil(args.rows / BATCH)} (same epochs)"
    )
    baseline = f"({args.seeds} seeds, search baseline)"
    print(f"scratch, same steps    ({args.seeds} seeds): {metric} {_fmt(scratch)}")
    print(f"scratch, same epochs   {baseline}: {metric} {_fmt(scratch_epochs)}")
    print(f"distilled              {baseline}: {metric} {_fmt(distilled)}")
    print(f"gap recovered, vs same-steps scratch:  {recovered(scratch):.1%}")
    print(f"gap recovered, vs same-epochs scratch: {recovered(scratch_epochs):.1%}")
    out = {
        "kind": kind,
        "teacher": t_value,
        "scratch": scratch,
        "distilled": distilled,
        "recovered": recovered(scratch),
    }
    if kind == "regression":
        rmse_scratch = [r["rmse"] for r in runs]
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        onnx = onnx_rmse(result.search_dir, x_test, y_test)
        exported = (
            f"exported student (ONNX Runtime, the chosen trial's weights, one run) {onnx:.4f}"
            if onnx is not None
            else "no exported student found"
        )
        print(
            f"RMSE (targets' units): teacher {teacher_rmse(teacher['path'], x_test, y_test):.4f}; "
            f"scratch same steps {_fmt(rmse_scratch)}; {exported}"
        )
        spread = ", ".join(f"{s:.3f}" for s in y_test.std(0))
        print(f"target sd on the test rows: {spread} (RMSE is over all targets)")
    return out


def main() -> None:
    """Run both tasks and print their lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="search trials per task")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per trial and run")
    parser.add_argument("--seeds", type=int, default=3, help="baseline seeds per side")
    parser.add_argument("--rows", type=int, default=1000, help="labeled training rows")
    parser.add_argument(
        "--transfer",
        type=int,
        default=4,
        help="transfer rows (labels withheld) per labeled row; 0: none (scratch and "
        "distilled then train on the same rows for the same steps)",
    )
    parser.add_argument("--tasks", default="regression,multilabel")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    torch.set_num_threads(1)
    print(f"# task_distillation  {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"# command: python benchmarks/task_distillation.py {' '.join(sys.argv[1:])}")
    print(
        f"# machine: {platform.machine()} {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, shared with a CI run (timings are under load; the "
        f"metrics are the point); torch {torch.__version__}, 1 thread in the driver; "
        "one local Ray, 2 CPUs"
    )
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as folder:
            for kind in args.tasks.split(","):
                run_task(kind, args, Path(folder))
    finally:
        ray.shutdown()
    print(f"\n({time.perf_counter() - started:.0f}s in all)")


if __name__ == "__main__":
    main()
