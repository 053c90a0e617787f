"""What a search costs on top of the training it runs: ``kdforge search`` vs a plain loop.

The same N fixed students (MLPs of the ``mlp`` space; ``hinton_kd`` at T=4, alpha=0.5;
the same lr, epochs, batch size and generated data; the teacher's outputs already
computed) are trained twice, side by side in one run, each as its own process timed
from its start to its exit:

* **(a) kdforge**: the real ``kdforge search CONFIG`` command. The config names the
  students as ``search.initial_points`` with ``num_trials`` equal to their number and
  ``grace_period`` equal to ``epochs`` (so ASHA stops none), a fixed lr and loss
  hyperparameters, the ``arrays`` dataset with given splits, a TorchScript teacher
  whose outputs are in the teacher cache already, and a new SQLite MLflow store. All
  of the search runs: Ray, Tune with Optuna and ASHA, MLflow parent and nested runs,
  leaderboard, plots, report. Export/registry and the distillation-gain retraining
  are turned off (``export.enabled``, ``baseline.enabled``): they are not the N trials.
* **(b) plain**: a hand-written PyTorch loop in one process (index batching, AdamW
  (the same fused kernel kdforge uses; ``--plain-optimizer default`` for torch's
  default) + cosine, KD loss, validation every epoch, test accuracy of the best epoch,
  best weights kept), no Ray, no MLflow.

Two settings:

* ``default``: kdforge's defaults (``cpus_per_trial: 1``, so as many trials at once as
  there are CPUs, one torch thread each) against the plain loop with torch's default
  threads: what a user gets.
* ``same``: kdforge with ``cpus_per_trial`` = all CPUs, i.e. one trial at a time using
  every core, exactly like the plain loop: the difference is kdforge's overhead, and
  ``overhead per trial = (wall (a) - wall (b)) / N``.

It prints the wall-time ratio (a)/(b), the overhead per trial, the peak memory of each
whole process tree (kdforge's driver, Ray's processes and workers; RSS summed from
``/proc`` every 0.2 s), trials per minute, and where (a)'s time goes (from the time
each line of kdforge's output arrived). ``--scale`` repeats both at 2x and 4x the data
rows and the trial count (training work 4x and 16x) and prints how wall time grows.
Usage::

    python benchmarks/search_overhead.py [--settings default same] [--trials 8]
        [--rows 20000] [--epochs 8] [--scale] [--plain-optimizer fused|default]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_ARCHS = [
    {"depth": 1, "width_0": 64},
    {"depth": 2, "width_0": 64, "width_1": 32},
    {"depth": 1, "width_0": 128},
    {"depth": 2, "width_0": 128, "width_1": 64},
]
_LR, _T, _ALPHA, _WD = 3e-3, 4.0, 0.5, 1e-4
_FEATURES, _CLASSES = 64, 10


def archs(n: int) -> list[dict[str, Any]]:
    """n distinct students: the four architectures with growing dropout."""
    return [
        {**_ARCHS[i % len(_ARCHS)], "dropout": round(0.01 * (i // len(_ARCHS)), 4)}
        for i in range(n)
    ]


def make_data(rows: int, folder: Path, seed: int = 0) -> Path:
    """Generated 10-class data labeled by a random MLP teacher (saved as TorchScript).

    Writes ``data.npz`` (given train/val/test splits), ``teacher.pt`` and the teacher's
    train logits ``teacher_logits.npy`` (for the plain loop); returns the folder.
    """
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.nn.Sequential(
        torch.nn.Linear(_FEATURES, 256), torch.nn.Tanh(), torch.nn.Linear(256, _CLASSES)
    )
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    held = max(500, rows // 5)
    x = torch.randn(rows + 2 * held, _FEATURES, generator=gen)
    with torch.no_grad():
        logits = teacher(x)
    y = (logits + 0.3 * torch.randn(logits.shape, generator=gen)).argmax(dim=1)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "data.npz",
        x_train=x[:rows].numpy(),
        y_train=y[:rows].numpy(),
        x_val=x[rows : rows + held].numpy(),
        y_val=y[rows : rows + held].numpy(),
        x_test=x[rows + held :].numpy(),
        y_test=y[rows + held :].numpy(),
    )
    np.save(folder / "teacher_logits.npy", logits[:rows].numpy())
    torch.jit.save(torch.jit.script(teacher.eval()), str(folder / "teacher.pt"))
    return folder


# --------------------------------------------------------------------------- memory


class PeakRss:
    """Peak summed RSS of a process and all its descendants (Linux ``/proc``).

    Sampled from a thread of this (idle, waiting) benchmark process.
    """

    def __init__(self, root: int, period: float = 0.2) -> None:
        self.root, self.period, self.peak = root, period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.root))
            self._stop.wait(self.period)

    def stop(self) -> int:
        """Stop sampling; return the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak


def tree_rss(root: int) -> int:
    """Summed RSS of ``root`` and its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        pid, ppid = int(entry), int(fields.get("PPid", "0").strip())
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def timed_process(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command``; wall time from start to exit, peak tree RSS, timed output lines."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    memory = PeakRss(proc.pid)
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
    code = proc.wait()
    wall = time.perf_counter() - started
    peak = memory.stop()
    if code != 0:
        tail = "\n".join(text for _, text in lines[-30:])
        raise RuntimeError(f"{command[:3]} exited {code}:\n{tail}")
    return {"wall": wall, "peak": peak, "lines": lines}


# --------------------------------------------------------------------------- (b) plain


def plain_trial(
    index: int,
    arch: dict[str, Any],
    data: dict[str, torch.Tensor],
    epochs: int,
    batch_size: int,
    optimizer: str,
) -> dict[str, float]:
    """Train one student with a hand-written loop; returns its accuracies and time."""
    from kdforge.data import DataInfo
    from kdforge.search_spaces.mlp import MLPSpace

    started = time.perf_counter()
    torch.manual_seed(index)
    info = DataInfo(name="generated", input_shape=(_FEATURES,), num_classes=_CLASSES)
    model = MLPSpace(MLPSpace.Params()).build(arch, info)
    x, y, t = data["x_train"], data["y_train"], data["teacher"]
    fused = {"fused": True} if optimizer == "fused" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=_LR, weight_decay=_WD, **fused)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(index)
    best_val, best_test, best_state = -1.0, float("nan"), None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            out = model(x[idx])
            kd = F.kl_div(
                F.log_softmax(out / _T, dim=-1),
                F.log_softmax(t[idx] / _T, dim=-1),
                reduction="batchmean",
                log_target=True,
            )
            loss = (1 - _ALPHA) * F.cross_entropy(out, y[idx]) + _ALPHA * kd * _T**2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            val = float((model(data["x_val"]).argmax(1) == data["y_val"]).float().mean())
            if val > best_val:
                best_val = val
                test = model(data["x_test"]).argmax(1) == data["y_test"]
                best_test = float(test.float().mean())
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    return {"val_acc": best_val, "test_acc": best_test, "seconds": time.perf_counter() - started}


def plain_main(folder: Path, n: int, epochs: int, batch_size: int, optimizer: str) -> None:
    """The (b) process: load the data and teacher logits, train n students, print JSON."""
    arrays = np.load(folder / "data.npz")
    data = {key: torch.from_numpy(arrays[key]) for key in arrays.files}
    data["teacher"] = torch.from_numpy(np.load(folder / "teacher_logits.npy"))
    results = [
        plain_trial(i, arch, data, epochs, batch_size, optimizer) for i, arch in enumerate(archs(n))
    ]
    print("RESULTS " + json.dumps({"trials": results, "threads": torch.get_num_threads()}))


# --------------------------------------------------------------------------- (a) kdforge


def search_config(
    folder: Path, n: int, epochs: int, batch_size: int, cpus_per_trial: float | None
) -> dict[str, Any]:
    """The ``kdforge search`` config training exactly the n fixed students."""
    config: dict[str, Any] = {
        "name": "overhead",
        "output_dir": str(folder / "runs"),
        "dataset": {"name": "arrays", "params": {"path": str(folder / "data.npz")}},
        "teacher": {"name": "checkpoint", "params": {"path": str(folder / "teacher.pt")}},
        "student": {"name": "mlp", "params": {"max_depth": 2, "max_width": 128}},
        "loss": {"name": "hinton_kd", "hparams": {"temperature": _T, "alpha": _ALPHA}},
        "search": {
            "num_trials": n,
            "epochs": epochs,
            "grace_period": epochs,  # ASHA stops no trial: both sides train every epoch
            "batch_size": batch_size,
            "lr": {"low": _LR, "high": _LR},
            "weight_decay": _WD,
            "initial_points": [{"student": arch} for arch in archs(n)],
        },
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "overhead"},
        "teacher_cache": {"dir": str(folder / "teacher-cache")},
        "export": {"enabled": False},
        "baseline": {"enabled": False},
    }
    if cpus_per_trial is not None:
        config["search"]["cpus_per_trial"] = cpus_per_trial
    return config


def warm_teacher_cache(config_path: Path) -> None:
    """Compute the teacher's outputs into the cache (the issue: 'already available')."""
    from kdforge.config import load_search_config
    from kdforge.search.plan import plan_search
    from kdforge.search.run import load_data, prepare_run

    plan = plan_search(load_search_config(config_path))
    prepare_run(plan, load_data(plan), config_path.parent, lambda _: None, resume=False)


def trial_results(tracking_uri: str) -> list[dict[str, float]]:
    """Each trial's last metrics plus its nested MLflow run's start and end (seconds).

    The driver opens a trial's run when Tune starts the trial and closes it when Tune
    reports it complete, so the two times bracket everything Tune does for the trial.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("overhead")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.kdforge.trial_id != ''"
    )
    return [
        {
            **run.data.metrics,
            "run_start": run.info.start_time / 1000,
            "run_end": run.info.end_time / 1000,
        }
        for run in runs
    ]


def trial_gaps(trials: list[dict[str, float]], concurrent: int) -> dict[str, float]:
    """Mean seconds per trial inside Tune's fit that are not training.

    ``in_trial``: a trial's run time minus its training time (worker start or reset,
    payload, cost measures, reports, checkpoint); ``first``/``later``: the same for the
    first ``concurrent`` trials (each pays a worker process start) and the others.
    """
    spans = sorted(
        (t["run_start"], t["run_end"] - t["run_start"] - t["train_time_s"]) for t in trials
    )
    extra = [gap for _, gap in spans]
    first, later = extra[:concurrent], extra[concurrent:] or extra
    return {
        "in_trial": sum(extra) / len(extra),
        "first": sum(first) / len(first),
        "later": sum(later) / len(later),
    }


def _phase_marks(lines: list[tuple[float, str]]) -> dict[str, float]:
    """When kdforge printed the lines that end each phase (seconds since start)."""
    marks: dict[str, float] = {}
    patterns = {
        "started": "kdforge search ",
        "teacher": "teacher ",
        "searching": "searching ",
        "first_trial": "trial ",
        "finished": "search finished in",
    }
    for at, text in lines:
        for name, prefix in patterns.items():
            if name not in marks and text.lstrip().startswith(prefix):
                marks[name] = at
    return marks


# --------------------------------------------------------------------------- compare


def compare(
    rows: int,
    n: int,
    epochs: int,
    batch_size: int,
    setting: str,
    optimizer: str,
    verbose: bool = True,
) -> dict[str, float]:
    """Run (b) then (a) on the same generated data and print the comparison."""
    cpus = os.cpu_count() or 1
    cpus_per_trial = float(cpus) if setting == "same" else None
    with tempfile.TemporaryDirectory(prefix="kdforge-overhead-") as tmp:
        folder = make_data(rows, Path(tmp))
        config_path = folder / "search.yaml"
        config = search_config(folder, n, epochs, batch_size, cpus_per_trial)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        warm_teacher_cache(config_path)
        plain_cmd = [sys.executable, __file__, "--plain-worker", str(folder)]
        plain_cmd += ["--trials", str(n), "--epochs", str(epochs)]
        plain_cmd += ["--batch-size", str(batch_size), "--plain-optimizer", optimizer]
        b = timed_process(plain_cmd)
        result_line = next(text for _, text in b["lines"] if text.startswith("RESULTS "))
        b_out = json.loads(result_line.removeprefix("RESULTS "))
        kdforge = Path(sys.executable).with_name("kdforge")
        a = timed_process([str(kdforge), "search", str(config_path)])
        a_trials = trial_results(config["tracking"]["uri"])
    if len(a_trials) != n:
        raise RuntimeError(f"kdforge reported {len(a_trials)} trials, expected {n}")
    concurrent = cpus if setting == "default" else 1
    ratio = a["wall"] / b["wall"]
    per_trial = (a["wall"] - b["wall"]) / n
    a_train = sum(float(r["train_time_s"]) for r in a_trials)
    b_train = sum(float(r["seconds"]) for r in b_out["trials"])
    if verbose:
        print(
            f"\n[{setting}] {n} students x {epochs} epochs, {rows} train rows, batch "
            f"{batch_size}; (a) {concurrent} trial(s) at a time with "
            f"{cpus if setting == 'same' else 1} torch thread(s) each; (b) one process, "
            f"{b_out['threads']} torch threads, {optimizer} AdamW"
        )
        for name, run, mean in (
            ("(b) plain loop ", b, b_train / n),
            ("(a) kdforge    ", a, a_train / n),
        ):
            print(
                f"  {name} {run['wall']:7.2f} s  ({60 * n / run['wall']:5.1f} trials/min, "
                f"mean trial training {mean:.2f} s, peak RSS {run['peak'] / 2**20:6.0f} MiB)"
            )
        gaps = trial_gaps(a_trials, concurrent)
        marks = _phase_marks(a["lines"])
        # wall (a) = per search + (training + N x per trial) / concurrency, exactly.
        spans = sum(t["run_end"] - t["run_start"] for t in a_trials)
        per_search = a["wall"] - spans / concurrent
        print(f"  ratio (a)/(b)   {ratio:7.2f}")
        print(
            f"  fixed overhead per trial: {gaps['in_trial']:.2f} s (a trial's time in Tune, its "
            f"MLflow run open -> closed, minus its training; first trial per worker "
            f"{gaps['first']:.2f} s, later ones {gaps['later']:.2f} s)"
        )
        print(
            f"  fixed overhead per search: {per_search:.2f} s (wall time outside the trials' "
            f"runs, per slot: start, Ray, MLflow, Tune setup, idle slots, reports, exit)"
        )
        print(f"  (wall (a) - wall (b)) / N: {per_trial:.2f} s per trial")
        best_a = max(float(r["val_acc"]) for r in a_trials)
        best_b = max(float(r["val_acc"]) for r in b_out["trials"])
        print(f"  best val acc    (a) {best_a:.3f}  (b) {best_b:.3f}")
        if len(marks) == 5:
            print("  where (a)'s time goes (from the time each line of output arrived):")
            rows_out = [
                ("start, imports, config and plugins", marks["started"]),
                ("data and cached teacher outputs", marks["teacher"] - marks["started"]),
                ("wait for Ray/MLflow, Tune setup", marks["searching"] - marks["teacher"]),
                ("trials (Tune's fit)", marks["finished"] - marks["searching"]),
                ("  of which training in trials", a_train / concurrent),
                ("leaderboard, plots, report, exit", a["wall"] - marks["finished"]),
            ]
            for label, seconds in rows_out:
                print(f"    {label:38s} {seconds:6.2f} s")
    gaps = trial_gaps(a_trials, concurrent)
    spans = sum(t["run_end"] - t["run_start"] for t in a_trials)
    return {
        "a": a["wall"],
        "b": b["wall"],
        "ratio": ratio,
        "per_trial": per_trial,
        "fixed_trial": gaps["in_trial"],
        "fixed_search": a["wall"] - spans / concurrent,
    }


def main() -> None:
    """Parse the arguments and run the comparisons (and the scaling mode)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--settings", nargs="+", choices=("default", "same"), default=["default", "same"]
    )
    parser.add_argument("--plain-optimizer", choices=("fused", "default"), default="fused")
    parser.add_argument("--scale", action="store_true", help="also run at 2x and 4x")
    parser.add_argument("--plain-worker", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        plain_main(
            Path(args.plain_worker), args.trials, args.epochs, args.batch_size, args.plain_optimizer
        )
        return
    for setting in args.settings:
        base = compare(
            args.rows, args.trials, args.epochs, args.batch_size, setting, args.plain_optimizer
        )
        if not args.scale:
            continue
        print(f"\n[{setting}] scaling: data rows and trial count both x f (training work x f^2)")
        print(
            "    f   work   (b) wall  growth   (a) wall  growth   ratio  (a-b)/N  "
            "fixed/trial  fixed/search"
        )
        print(
            f"    1     1x {base['b']:9.1f}s   1.00x {base['a']:9.1f}s   1.00x  "
            f"{base['ratio']:5.2f}  {base['per_trial']:6.2f}s  {base['fixed_trial']:9.2f}s  "
            f"{base['fixed_search']:10.2f}s"
        )
        for f in (2, 4):
            r = compare(
                args.rows * f,
                args.trials * f,
                args.epochs,
                args.batch_size,
                setting,
                args.plain_optimizer,
                verbose=False,
            )
            print(
                f"    {f}  {f * f:4d}x {r['b']:9.1f}s  {r['b'] / base['b']:5.2f}x {r['a']:9.1f}s  "
                f"{r['a'] / base['a']:5.2f}x  {r['ratio']:5.2f}  {r['per_trial']:6.2f}s  "
                f"{r['fixed_trial']:9.2f}s  {r['fixed_search']:10.2f}s"
            )


if __name__ == "__main__":
    main()
