"""What a search costs on top of the training it runs: Ray Tune + MLflow vs a plain loop.

The same N fixed students (MLPs of the ``mlp`` space, ``hinton_kd`` at T=4, alpha=0.5,
the same lr, epochs, batch size and generated data; the teacher's logits computed
once up front) are trained twice, side by side in one run:

* **(a) kdforge**: Ray Tune driven like ``kdforge search`` does it (the real
  :func:`kdforge.trial.run_trial` through ``tune.with_parameters``, ASHA, actor reuse,
  the MLflow trial logger writing to a temporary SQLite store through
  :class:`kdforge.journal.TrackingWriter`, the progress printer, the failure budget,
  ``CheckpointConfig(num_to_keep=1)`` and kdforge's Tune environment defaults). The
  fixed students are a ``tune.grid_search`` over their architectures instead of
  Optuna's sampling, so both sides train exactly the same models.
* **(b) plain**: a hand-written PyTorch loop (index batching, AdamW + cosine, KD loss,
  validation every epoch, test accuracy of the best epoch), no Ray, no MLflow.

Both use the same CPU parallelism: ``--concurrency c`` trials at once with one torch
thread each (Ray: ``num_cpus=c``, one CPU per trial; plain: c spawned processes,
timed after they started, or the driver process itself when c is 1).

It prints the wall-time ratio (a)/(b), the fixed overhead per trial (in trial-slot
seconds: ``(wall_a - wall_b) * c / N``), the peak memory of the whole process tree
(driver, Ray's processes and workers; RSS summed from ``/proc`` every 0.2 s), trials per
minute, and where (a)'s extra time goes (timestamps of Ray init, trial starts,
first results, completions, shutdown). ``--scale`` repeats both at 2x and 4x the
data rows and the trial count (training work 4x and 16x) and prints how wall time
grows. ``--profile FILE`` runs (a)'s driver under cProfile. Usage::

    python benchmarks/search_overhead.py [--trials 8] [--rows 20000] [--epochs 8]
        [--concurrency 1] [--scale] [--profile driver.prof] [--sync-check]
    python benchmarks/search_overhead.py --startup 2   # serial vs overlapped start
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.data import DataInfo
from kdforge.search_spaces.mlp import MLPSpace

_ARCHS = [
    {"depth": 1, "width_0": 64},
    {"depth": 2, "width_0": 64, "width_1": 32},
    {"depth": 1, "width_0": 128},
    {"depth": 2, "width_0": 128, "width_1": 64},
]
_LR, _T, _ALPHA = 3e-3, 4.0, 0.5
_FEATURES, _CLASSES = 64, 10


def _archs(n: int) -> list[dict[str, Any]]:
    # Distinct dicts (the dropout differs) so every grid point is its own trial.
    return [{**_ARCHS[i % len(_ARCHS)], "dropout": 0.01 * (i // len(_ARCHS))} for i in range(n)]


def make_data(rows: int, seed: int = 0) -> dict[str, Any]:
    """Generated 10-class data labeled by a random MLP teacher, and its train logits."""
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
    noisy = logits + 0.3 * torch.randn(logits.shape, generator=gen)
    y = noisy.argmax(dim=1)
    return {
        "train_x": x[:rows].contiguous(),
        "train_y": y[:rows].contiguous(),
        "teacher": logits[:rows].contiguous(),
        "val_x": x[rows : rows + held].contiguous(),
        "val_y": y[rows : rows + held].contiguous(),
        "test_x": x[rows + held :].contiguous(),
        "test_y": y[rows + held :].contiguous(),
    }


def _info() -> DataInfo:
    return DataInfo(name="generated", input_shape=(_FEATURES,), num_classes=_CLASSES)


# --------------------------------------------------------------------------- memory


class _PeakRss:
    """Peak summed RSS of this process and all its descendants (Linux ``/proc``).

    Sampled from a forked process (not a thread), so the sampling takes no GIL time
    from a training loop running in this process.
    """

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.peak = 0

    def __enter__(self) -> _PeakRss:
        ctx = mp.get_context("fork")
        self._stop = ctx.Event()
        self._value = ctx.Value("q", 0)
        self._proc = ctx.Process(
            target=_sample_loop, args=(os.getpid(), self.period, self._stop, self._value)
        )
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join()
        self.peak = int(self._value.value)


def _sample_loop(root: int, period: float, stop: Any, value: Any) -> None:
    me = os.getpid()
    while not stop.is_set():
        value.value = max(value.value, _tree_rss(root, skip=me))
        stop.wait(period)


def _tree_rss(root: int, skip: int = -1) -> int:
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
        if pid == skip:
            continue
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


# --------------------------------------------------------------------------- (b) plain


def plain_trial(
    index: int, arch: dict[str, Any], data: dict[str, Any], epochs: int, batch_size: int
) -> dict[str, float]:
    """Train one student with a hand-written loop; returns its accuracies and time."""
    started = time.perf_counter()
    torch.manual_seed(index)
    model = MLPSpace(MLPSpace.Params()).build(arch, _info())
    x, y, t = data["train_x"], data["train_y"], data["teacher"]
    opt = torch.optim.AdamW(model.parameters(), lr=_LR, weight_decay=1e-4)
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
            kd = (
                F.kl_div(
                    F.log_softmax(out / _T, dim=-1),
                    F.log_softmax(t[idx] / _T, dim=-1),
                    reduction="batchmean",
                    log_target=True,
                )
                * _T**2
            )
            loss = (1 - _ALPHA) * F.cross_entropy(out, y[idx]) + _ALPHA * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            val = float((model(data["val_x"]).argmax(1) == data["val_y"]).float().mean())
            if val > best_val:
                best_val = val
                best_test = float(
                    (model(data["test_x"]).argmax(1) == data["test_y"]).float().mean()
                )
                best_state = copy.deepcopy(model.state_dict())
    assert best_state is not None
    return {"val_acc": best_val, "test_acc": best_test, "seconds": time.perf_counter() - started}


_WORKER_DATA: dict[str, Any] = {}


def _pool_init(data: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    _WORKER_DATA.update(data)


def _pool_trial(args: tuple[int, dict[str, Any], int, int]) -> dict[str, float]:
    index, arch, epochs, batch_size = args
    return plain_trial(index, arch, _WORKER_DATA, epochs, batch_size)


def _noop(_: int) -> int:
    return os.getpid()


def run_plain(data: dict[str, Any], n: int, epochs: int, batch_size: int, c: int) -> dict[str, Any]:
    """(b): n students, c at a time; wall time excludes starting the c processes."""
    jobs = [(i, arch, epochs, batch_size) for i, arch in enumerate(_archs(n))]
    with _PeakRss() as mem:
        if c == 1:
            torch.set_num_threads(1)
            started = time.perf_counter()
            results = [plain_trial(i, a, data, e, b) for i, a, e, b in jobs]
            wall = time.perf_counter() - started
        else:
            with mp.get_context("spawn").Pool(c, _pool_init, (data,)) as pool:
                pool.map(_noop, range(c), chunksize=1)  # processes started and warm
                started = time.perf_counter()
                results = pool.map(_pool_trial, jobs, chunksize=1)
                wall = time.perf_counter() - started
    return {
        "wall": wall,
        "trial_s": [r["seconds"] for r in results],
        "peak": mem.peak,
        "val": [r["val_acc"] for r in results],
    }


# --------------------------------------------------------------------------- (a) kdforge


def _stamped_trial(config: dict[str, Any], payload: Any, stamps: str = "") -> None:
    """kdforge's trial function, plus an entry timestamp and the worker pid.

    Nothing runs after the last report (Tune stops the trial there), so the entry is
    written first.
    """
    with open(stamps, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "enter": time.time()}) + "\n")
    from kdforge.trial import run_trial

    run_trial(config, payload)


def _timeline_callback() -> Any:
    from ray.tune import Callback

    class Timeline(Callback):
        def __init__(self) -> None:
            self.events: list[tuple[float, str, str, int]] = []

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.events.append((time.time(), "start", trial.trial_id, 0))

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            self.events.append((time.time(), "result", trial.trial_id, int(result["epoch"])))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.events.append((time.time(), "complete", trial.trial_id, 0))

    return Timeline()


def run_kdforge(
    data: dict[str, Any],
    n: int,
    epochs: int,
    batch_size: int,
    c: int,
    profile: str | None = None,
    sync_metrics: bool = False,
) -> dict[str, Any]:
    """(a): the same students through Ray Tune + kdforge's trial, callbacks and MLflow."""
    marks: dict[str, float] = {"begin": time.time()}
    with _PeakRss() as mem, tempfile.TemporaryDirectory() as tmp:
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        out = _kdforge_search(data, n, epochs, batch_size, c, Path(tmp), marks, sync_metrics)
        wall = time.perf_counter() - started
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)
    out.update(wall=wall, peak=mem.peak, marks=marks)
    return out


def _kdforge_search(
    data: dict[str, Any],
    n: int,
    epochs: int,
    batch_size: int,
    c: int,
    tmp: Path,
    marks: dict[str, float],
    sync_metrics: bool = False,
) -> dict[str, Any]:
    import mlflow
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    import kdforge.search  # noqa: F401  (sets kdforge's Tune environment defaults)
    from kdforge.callbacks import FailureBudget, MlflowTrialLogger, ProgressPrinter
    from kdforge.journal import JOURNAL_NAME, TrackingWriter
    from kdforge.plugins.losses.hinton_kd import HintonKD
    from kdforge.search_runner import start_tracking_and_ray
    from kdforge.trial import TrialPayload

    marks["imported"] = time.time()
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    # As execute_search: the MLflow experiment is set up while Ray starts.
    experiment, _ = start_tracking_and_ray(uri, "overhead", None, num_cpus=c)
    marks["ray_ready"] = time.time()
    parent = mlflow.start_run(experiment_id=experiment, run_name="bench")
    marks["mlflow_ready"] = time.time()
    try:
        payload = TrialPayload(
            info=_info(),
            train_x=data["train_x"],
            train_y=data["train_y"],
            teacher_train_logits=data["teacher"],
            val_x=data["val_x"],
            val_y=data["val_y"],
            test_x=data["test_x"],
            test_y=data["test_y"],
            space=MLPSpace(MLPSpace.Params()),
            loss_cls=HintonKD,
            loss_params=HintonKD.Params(),
            epochs=epochs,
            batch_size=batch_size,
            weight_decay=1e-4,
            seed=0,
            threads=1,
        )
        stamps = tmp / "stamps.jsonl"
        trainable = tune.with_resources(
            tune.with_parameters(_stamped_trial, payload=payload, stamps=str(stamps)),
            {"cpu": 1, "gpu": 0},
        )
        writer = TrackingWriter(uri, tmp / JOURNAL_NAME)
        if sync_metrics:  # the behaviour before 2026-11-28: per-epoch MLflow call inline
            writer.log_metrics_later = lambda key, metrics: writer.log_batch(key, metrics)
        logger = MlflowTrialLogger(writer, experiment, parent.info.run_id, epochs)
        in_logger = _time_calls(logger, "on_trial_result")
        timeline = _timeline_callback()
        budget = FailureBudget(3)
        tuner = tune.Tuner(
            trainable,
            param_space={
                "student": tune.grid_search(_archs(n)),
                "loss": {"temperature": _T, "alpha": _ALPHA},
                "lr": _LR,
            },
            tune_config=tune.TuneConfig(
                metric="val_acc",
                mode="max",
                scheduler=ASHAScheduler(
                    time_attr="training_iteration", max_t=epochs, grace_period=epochs
                ),
                max_concurrent_trials=c,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(tmp),
                verbose=0,
                callbacks=[logger, ProgressPrinter(n, epochs, lambda _: None), budget, timeline],
                stop=budget.stopper(),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        marks["fit_start"] = time.time()
        grid = tuner.fit()
        writer.flush()  # as kdforge's _run_tune does after fit
        marks["fit_end"] = time.time()
        results = [grid[i] for i in range(len(grid))]
        errors = [r.error for r in results if r.error is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} trials failed: {errors[0]}")
        metrics = [r.metrics or {} for r in results]
        val = [float(m["val_acc"]) for m in metrics]
        trial_s = [float(m["train_time_s"]) for m in metrics]
        lines = stamps.read_text().splitlines()
        stamped = [json.loads(line) for line in lines]
    finally:
        ray.shutdown()
        mlflow.end_run()
        marks["end"] = time.time()
    return {
        "val": val,
        "trial_s": trial_s,
        "events": timeline.events,
        "stamps": stamped,
        "logger_s": in_logger,
    }


def _time_calls(obj: Any, name: str) -> list[float]:
    """Record the seconds of every call of ``obj.name`` (in the returned list)."""
    spent: list[float] = []
    method = getattr(obj, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - began)

    setattr(obj, name, timed)
    return spent


def _start_once(overlap: bool, fresh: bool, folder: Path) -> float:
    import ray

    from kdforge.ray_init import init_ray
    from kdforge.search_runner import start_tracking_and_ray
    from kdforge.tracking import setup_experiment

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if not fresh:  # the store exists already (any search after the first)
        setup_experiment(uri, "overhead")
    started = time.perf_counter()
    if overlap:
        start_tracking_and_ray(uri, "overhead", None, num_cpus=1)
    else:
        setup_experiment(uri, "overhead")
        init_ray(None, num_cpus=1)
    took = time.perf_counter() - started
    ray.shutdown()
    return took


def compare_startup(repeats: int) -> None:
    """MLflow experiment setup then Ray start, serial vs overlapped (execute_search)."""
    import mlflow  # noqa: F401  (imports are not what is compared)
    import ray  # noqa: F401

    import kdforge.search  # noqa: F401

    print("\nstartup: MLflow experiment (SQLite) + ray.init, best of", repeats)
    for fresh in (True, False):
        best = {True: math.inf, False: math.inf}
        for _ in range(repeats):
            for overlap in (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    best[overlap] = min(best[overlap], _start_once(overlap, fresh, Path(tmp)))
        print(
            f"  {'new' if fresh else 'existing'} store: serial {best[False]:.2f} s, "
            f"overlapped {best[True]:.2f} s, saved {best[False] - best[True]:.2f} s"
        )


# --------------------------------------------------------------------------- report


def _mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


def _breakdown(a: dict[str, Any], epochs: int) -> list[str]:
    marks, events, stamps = a["marks"], a["events"], a["stamps"]
    first: dict[str, float] = {}
    start: dict[str, float] = {}
    done: dict[str, float] = {}
    for t, kind, trial, epoch in events:
        if kind == "start":
            start[trial] = t
        elif kind == "result" and epoch == 1:
            first[trial] = t
        elif kind == "complete":
            done[trial] = t
    epoch_s = sum(a["trial_s"]) / max(1, len(a["trial_s"])) / epochs
    startup = [first[k] - start[k] - epoch_s for k in first if k in start]
    pids = {s["pid"] for s in stamps}
    # Tune's trial start -> the function entered (actor start/reset, payload fetch).
    order = sorted(start.values())
    enters = sorted(s["enter"] for s in stamps)
    to_enter = [e - s for s, e in zip(order, enters, strict=False)]
    ends = sorted(done.values())
    gaps = [s - e for s, e in zip(order[len(order) - len(ends) + 1 :], ends, strict=False)]
    gaps = [g for g in gaps if g >= 0] if len(order) > 1 else []
    return [
        f"  imports (ray, mlflow, kdforge)    {marks['imported'] - marks['begin']:6.2f} s",
        f"  MLflow store || ray.init          {marks['ray_ready'] - marks['imported']:6.2f} s",
        f"  MLflow parent run                 {marks['mlflow_ready'] - marks['ray_ready']:6.2f} s",
        f"  Tuner setup -> first trial start  {min(start.values()) - marks['mlflow_ready']:6.2f} s",
        f"  trial start -> epoch-1 result, minus one epoch of training: "
        f"mean {_mean(startup):.2f} s, first {startup[0] if startup else 0:.2f} s",
        f"  trial start -> trial function entered: mean "
        f"{_mean(to_enter):.2f} s, first {to_enter[0] if to_enter else 0:.2f} s",
        f"  trial complete -> next trial start: mean {sum(gaps) / max(1, len(gaps)):.2f} s",
        f"  MLflow trial logger per result (the trial waits for it): "
        f"{1000 * sum(a['logger_s']) / max(1, len(a['logger_s'])):.1f} ms",
        f"  last trial complete -> fit returns {marks['fit_end'] - max(done.values()):6.2f} s",
        f"  ray.shutdown + end run            {marks['end'] - marks['fit_end']:6.2f} s",
        f"  worker processes used: {len(pids)} for {len(stamps)} trials (actor reuse)",
    ]


def compare(
    rows: int,
    n: int,
    epochs: int,
    batch_size: int,
    c: int,
    profile: str | None = None,
    verbose: bool = True,
    sync_check: bool = False,
) -> dict[str, float]:
    """Run (b) then (a) on the same data and print the comparison."""
    data = make_data(rows)
    b = run_plain(data, n, epochs, batch_size, c)
    a = run_kdforge(data, n, epochs, batch_size, c, profile)
    old = run_kdforge(data, n, epochs, batch_size, c, sync_metrics=True) if sync_check else None
    ratio = a["wall"] / b["wall"]
    overhead = (a["wall"] - b["wall"]) * c / n
    # Split (a)'s extra time: once per search (imports, MLflow, Ray start/stop) vs
    # inside tuner.fit, which grows with the trials.
    fit = a["marks"]["fit_end"] - a["marks"]["fit_start"]
    per_search = a["wall"] - fit
    per_trial = (fit - b["wall"]) * c / n
    if verbose:
        print(
            f"\n{n} students x {epochs} epochs, {rows} train rows, batch {batch_size}, "
            f"{c} trial(s) at a time, 1 torch thread each"
        )
        print(
            f"  (b) plain loop     {b['wall']:7.2f} s  ({60 * n / b['wall']:5.1f} trials/min, "
            f"mean trial {sum(b['trial_s']) / n:.2f} s, peak RSS {b['peak'] / 2**20:6.0f} MiB)"
        )
        print(
            f"  (a) kdforge/Ray    {a['wall']:7.2f} s  ({60 * n / a['wall']:5.1f} trials/min, "
            f"mean trial {sum(a['trial_s']) / n:.2f} s, peak RSS {a['peak'] / 2**20:6.0f} MiB)"
        )
        print(f"  ratio (a)/(b)      {ratio:7.2f}")
        print(f"  fixed overhead     {overhead:7.2f} s per trial (trial-slot seconds)")
        print(
            f"    = {per_search:.2f} s once per search (imports, MLflow, Ray start/stop) "
            f"+ {per_trial:.2f} s per trial inside tuner.fit ({fit:.2f} s)"
        )
        print(
            f"  training in trials (a)/(b): {sum(a['trial_s']) / sum(b['trial_s']):.2f}  "
            f"best val acc (a) {max(a['val']):.3f} (b) {max(b['val']):.3f}"
        )
        if old is not None:
            old_fit = old["marks"]["fit_end"] - old["marks"]["fit_start"]
            print(
                f"  (a) with per-epoch MLflow calls inline (before): {old['wall']:.2f} s, "
                f"tuner.fit {old_fit:.2f} s (now {fit:.2f} s), MLflow logger per result "
                f"{1000 * _mean(old['logger_s']):.1f} ms (now {1000 * _mean(a['logger_s']):.1f} ms)"
            )
        print("  where (a)'s time goes:")
        for line in _breakdown(a, epochs):
            print(line)
    return {
        "a": a["wall"],
        "b": b["wall"],
        "ratio": ratio,
        "overhead": overhead,
        "fit": fit,
        "per_trial": per_trial,
    }


def main() -> None:
    """Parse the arguments and run the comparison (and the scaling mode)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--scale", action="store_true", help="also run at 2x and 4x")
    parser.add_argument("--profile", help="write a cProfile of (a)'s driver to this file")
    parser.add_argument(
        "--sync-check",
        action="store_true",
        help="also run (a) with per-epoch MLflow calls inline (the old way)",
    )
    parser.add_argument(
        "--startup",
        type=int,
        default=0,
        metavar="REPEATS",
        help="only compare serial vs overlapped MLflow + Ray startup",
    )
    args = parser.parse_args()
    if args.startup:
        compare_startup(args.startup)
        return
    base = compare(
        args.rows,
        args.trials,
        args.epochs,
        args.batch_size,
        args.concurrency,
        args.profile,
        sync_check=args.sync_check,
    )
    if not args.scale:
        return
    print("\nscaling: data rows and trial count both x f (training work x f^2)")
    print("    f   work   (b) wall  growth   (a) wall  growth   ratio  (a) fit  per trial in fit")
    print(
        f"    1     1x {base['b']:9.1f}s   1.00x {base['a']:9.1f}s   1.00x  {base['ratio']:5.2f}"
        f"  {base['fit']:6.1f}s  {base['per_trial']:6.2f} s"
    )
    for f in (2, 4):
        r = compare(
            args.rows * f,
            args.trials * f,
            args.epochs,
            args.batch_size,
            args.concurrency,
            verbose=False,
        )
        print(
            f"    {f}  {f * f:4d}x {r['b']:9.1f}s  {r['b'] / base['b']:5.2f}x {r['a']:9.1f}s  "
            f"{r['a'] / base['a']:5.2f}x  {r['ratio']:5.2f}  {r['fit']:6.1f}s  "
            f"{r['per_trial']:6.2f} s"
        )


if __name__ == "__main__":
    main()
