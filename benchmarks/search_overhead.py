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

Equal parallelism, against the best plain arrangement: kdforge runs with its defaults
(``cpus_per_trial: 1``: as many trials at once as there are CPUs, one torch thread
each); the plain loop runs both ways the same cores can be used, as one process with
torch's default threads (trials one after the other) and as one process per CPU with
one thread each (every C-th student), and the faster is the baseline. kdforge runs three
times, each with a new SQLite store:

* **first search on the machine**: kdforge's user cache folder is empty, so the search
  makes the empty-store template (``kdforge.tracking.sqlite_template``) and starts its
  own local Ray;
* **default**: a later search: the store is copied from the template, Ray starts;
* **joins ``kdforge ray start``**: a local Ray started beforehand (its start is timed
  apart and not counted) is joined; its processes count in the peak memory.

It prints each wall time, the ratio to the best plain arrangement, kdforge's **fixed
cost per search** (wall time outside the trials, per slot: start-up, Ray, MLflow, Tune
setup, idle slots while the last trials finish, reports, exit; ``wall = per search +
(training + N x per trial) / slots``) and **per trial** (a trial's time in Tune, its
nested MLflow run open -> closed, minus its training), where the search's time goes
(from the time each output line arrived), and the peak memory of each whole process
tree (RSS summed from ``/proc`` every 0.2 s). Usage::

    python benchmarks/search_overhead.py [--trials 8] [--rows 100000] [--epochs 8]
        [--plain-optimizer fused|default]
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

    def __init__(self, root: int, period: float = 0.2, extra: tuple[int, ...] = ()) -> None:
        self.root, self.period, self.peak, self.extra = root, period, 0, extra
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(tree_rss(r) for r in (self.root, *self.extra)))
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


def timed_process(
    command: list[str], env: dict[str, str] | None = None, extra: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Run ``command``; wall time from start to exit, peak tree RSS, timed output lines.

    ``extra``: more process trees counted in the peak (a shared Ray's processes).
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    memory = PeakRss(proc.pid, extra=extra)
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


def plain_main(
    folder: Path, n: int, epochs: int, batch_size: int, optimizer: str, procs: int, shard: int
) -> None:
    """The (b) process: train the n students, print JSON.

    ``procs`` > 1 and ``shard`` < 0: start ``procs`` copies of this process, each with
    one torch thread and every ``procs``-th student, and gather their results.
    """
    if procs > 1 and shard < 0:
        base = [sys.executable, __file__, "--plain-worker", str(folder), "--trials", str(n)]
        base += ["--epochs", str(epochs), "--batch-size", str(batch_size)]
        base += ["--plain-optimizer", optimizer, "--plain-procs", str(procs)]
        children = [
            subprocess.Popen([*base, "--plain-shard", str(i)], stdout=subprocess.PIPE, text=True)
            for i in range(procs)
        ]
        results: list[dict[str, float]] = []
        for child in children:
            out, _ = child.communicate()
            line = next(t for t in out.splitlines() if t.startswith("RESULTS "))
            results += json.loads(line.removeprefix("RESULTS "))["trials"]
        print("RESULTS " + json.dumps({"trials": results, "threads": 1}))
        return
    if procs > 1:
        torch.set_num_threads(1)
    arrays = np.load(folder / "data.npz")
    data = {key: torch.from_numpy(arrays[key]) for key in arrays.files}
    data["teacher"] = torch.from_numpy(np.load(folder / "teacher_logits.npy"))
    mine = [(i, a) for i, a in enumerate(archs(n)) if procs <= 1 or i % procs == shard]
    results = [plain_trial(i, arch, data, epochs, batch_size, optimizer) for i, arch in mine]
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


def _fmt_run(name: str, run: dict[str, Any], n: int, mean: float) -> str:
    return (
        f"  {name:44s} {run['wall']:7.2f} s  ({60 * n / run['wall']:5.1f} trials/min, mean "
        f"trial training {mean:5.2f} s, peak RSS {run['peak'] / 2**20:6.0f} MiB)"
    )


def _kdforge_arm(
    folder: Path, tag: str, base: dict[str, Any], cache: Path, extra: tuple[int, ...] = ()
) -> dict[str, Any]:
    """One ``kdforge search`` with a new SQLite store; its wall time, peak RSS and trials."""
    config = json.loads(json.dumps(base))
    config["output_dir"] = str(folder / f"runs-{tag}")
    config["tracking"]["uri"] = f"sqlite:///{folder / f'mlflow-{tag}.db'}"
    path = folder / f"search-{tag}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    kdforge = Path(sys.executable).with_name("kdforge")
    run = timed_process(
        [str(kdforge), "search", str(path)], env={"KDFORGE_CACHE_DIR": str(cache)}, extra=extra
    )
    run["trials"] = trial_results(config["tracking"]["uri"])
    return run


def compare(
    rows: int, n: int, epochs: int, batch_size: int, optimizer: str, verbose: bool = True
) -> dict[str, float]:
    """Run the plain arrangements and the kdforge arms on the same data; print them."""
    from kdforge.cluster.ray_init import _processes_of, start_shared_ray, stop_shared_ray

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="kdforge-overhead-") as tmp:
        folder = make_data(rows, Path(tmp))
        config = search_config(folder, n, epochs, batch_size, None)  # cpus_per_trial: 1
        config_path = folder / "search.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        warm_teacher_cache(config_path)
        plain_cmd = [sys.executable, __file__, "--plain-worker", str(folder)]
        plain_cmd += ["--trials", str(n), "--epochs", str(epochs)]
        plain_cmd += ["--batch-size", str(batch_size), "--plain-optimizer", optimizer]
        plains = {}
        for procs in sorted({1, cpus}):
            run = timed_process([*plain_cmd, "--plain-procs", str(procs)])
            line = next(text for _, text in run["lines"] if text.startswith("RESULTS "))
            run["out"] = json.loads(line.removeprefix("RESULTS "))
            plains[procs] = run
        cache = folder / "user-cache"  # kdforge's user cache folder, empty at first
        arms = {"first": _kdforge_arm(folder, "first", config, cache)}
        arms["default"] = _kdforge_arm(folder, "default", config, cache)
        os.environ["KDFORGE_CACHE_DIR"] = str(cache)
        started = time.perf_counter()
        address = start_shared_ray(num_cpus=cpus)
        ray_start = time.perf_counter() - started
        try:
            ray_pids = tuple(_processes_of(address, f"/tmp/kdforge-ray-{os.getuid()}-6390"))
            arms["shared"] = _kdforge_arm(folder, "shared", config, cache, extra=ray_pids)
        finally:
            stop_shared_ray()
    for tag, arm in arms.items():
        if len(arm["trials"]) != n:
            raise RuntimeError(f"kdforge ({tag}) reported {len(arm['trials'])} trials, not {n}")
    best_procs = min(plains, key=lambda p: plains[p]["wall"])
    best = plains[best_procs]
    out: dict[str, float] = {"b": best["wall"]}
    print(
        f"\n{n} students x {epochs} epochs, {rows} train rows, batch {batch_size}, {optimizer} "
        f"AdamW, {cpus} CPUs. Equal parallelism: kdforge runs {cpus} trials at a time with one "
        f"torch thread each (cpus_per_trial: 1, its default); the plain loop runs as one process "
        f"with {cpus} torch threads, or as {cpus} processes with one thread each and every "
        f"{cpus}-th student; the faster of the two is the baseline."
    )
    for procs, run in plains.items():
        what = f"(b) plain, {procs} process(es) x {run['out']['threads']} thread(s)"
        mean = sum(float(t["seconds"]) for t in run["out"]["trials"]) / n
        print(_fmt_run(what + (" *" if procs == best_procs else ""), run, n, mean))
    labels = {
        "first": "(a) kdforge, first search on the machine",
        "default": "(a) kdforge, default (own Ray, new store)",
        "shared": "(a) kdforge, joins `kdforge ray start`",
    }
    for tag, arm in arms.items():
        trials = arm["trials"]
        mean = sum(float(t["train_time_s"]) for t in trials) / n
        print(_fmt_run(labels[tag], arm, n, mean))
    print(f"  (`kdforge ray start` itself, once, not counted above: {ray_start:.1f} s)")
    print("  arm                 ratio to best plain  fixed/search  fixed/trial (first, later)")
    for tag, arm in arms.items():
        gaps = trial_gaps(arm["trials"], cpus)
        spans = sum(t["run_end"] - t["run_start"] for t in arm["trials"])
        # wall (a) = per search + (training + N x per trial) / concurrency, exactly.
        per_search = arm["wall"] - spans / cpus
        ratio = arm["wall"] / best["wall"]
        out[f"ratio_{tag}"], out[f"search_{tag}"] = ratio, per_search
        print(
            f"  {tag:18s}  {ratio:19.2f}  {per_search:10.2f} s  {gaps['in_trial']:6.2f} s "
            f"({gaps['first']:.2f}, {gaps['later']:.2f})"
        )
        marks = _phase_marks(arm["lines"])
        if verbose and len(marks) == 5:
            a_train = sum(float(r["train_time_s"]) for r in arm["trials"])
            parts = [
                ("start, imports, config, plugins", marks["started"]),
                ("data, cached teacher outputs", marks["teacher"] - marks["started"]),
                ("wait for Ray/MLflow, Tune setup", marks["searching"] - marks["teacher"]),
                ("trials (Tune's fit)", marks["finished"] - marks["searching"]),
                ("  of which training / slot", a_train / cpus),
                ("reports, exit", arm["wall"] - marks["finished"]),
            ]
            print("      " + "; ".join(f"{k} {v:.2f} s" for k, v in parts))
    print(
        "  fixed/search: wall time outside the trials' runs, per slot (start, Ray, MLflow, Tune "
        "setup, idle slots at the end, reports, exit); fixed/trial: a trial's time in Tune "
        "(its MLflow run open -> closed) minus its training"
    )
    return out


def _header() -> None:
    import datetime
    import platform

    print("$ python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}; "
        f"load average {load} at the start (a shared machine: other jobs ran meanwhile, "
        "so compare the arms of one run, not runs)"
    )


def main() -> None:
    """Parse the arguments and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--plain-optimizer", choices=("fused", "default"), default="fused")
    parser.add_argument("--plain-worker", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--plain-procs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--plain-shard", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        plain_main(
            Path(args.plain_worker),
            args.trials,
            args.epochs,
            args.batch_size,
            args.plain_optimizer,
            args.plain_procs,
            args.plain_shard,
        )
        return
    _header()
    compare(args.rows, args.trials, args.epochs, args.batch_size, args.plain_optimizer)


if __name__ == "__main__":
    main()
