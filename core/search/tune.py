"""The trials of a search: a Ray Tune run (Optuna sampler + ASHA early stopping).

:func:`run_trials` runs (or, for ``kdforge resume``, restores) the Tune experiment in
``SEARCH_DIR/tune`` with the search's searcher and the shared trial payload, logs
every trial as a nested MLflow run from the driver (:mod:`kdforge.search.callbacks`)
and turns Tune's results into leaderboard rows.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from kdforge import progress
from kdforge.config import SearchConfig
from kdforge.data import ACCURACY, TaskMetric
from kdforge.errors import SearchError, TrackingError, disk_full_error, first_line
from kdforge.report.leaderboard import TrialRow, write_csv
from kdforge.search.callbacks import (
    FailureBudget,
    FailureFiles,
    MlflowTrialLogger,
    ProgressPrinter,
    trial_status,
)
from kdforge.search.distributed_trial import trial_trainable
from kdforge.search.interrupt import SearchInterrupted, TrialsInterrupt
from kdforge.search.remote import tune_location, tune_storage
from kdforge.search.sampler import ConstrainedOptunaSearch
from kdforge.search.state_digest import StateDigestRecorder
from kdforge.search.trial import FAILED, TrialPayload, split_config
from kdforge.storage import checkpoint_location
from kdforge.tracking.journal import JOURNAL_NAME, TrackingWriter
from kdforge.tracking.search_runs import ParentRun, existing_trial_runs, retire_lost_trials
from kdforge.wording import plural

__all__ = ["FAILURES_DIR", "TUNE_DIR", "rows_from_results", "run_trials"]

#: The Tune experiment's folder inside the search folder.
TUNE_DIR = "tune"
#: Failed trials' tracebacks inside the search folder (``trial-NNN.txt``).
FAILURES_DIR = "failures"


def run_trials(
    config: SearchConfig,
    searcher: ConstrainedOptunaSearch,
    payload: TrialPayload,
    search_dir: Path,
    parent: ParentRun,
    emit: Callable[[str], None],
    resume: bool = False,
) -> list[TrialRow]:
    """Run the search's trials; return one leaderboard row per trial.

    Args:
        config: The search config (``search`` settings, failure budget).
        searcher: The Optuna searcher (:func:`kdforge.search.sampler.make_searcher`).
        payload: What every trial shares, stored once in Ray's object store.
        search_dir: The search folder (``tune/``, ``leaderboard.csv``, the journal).
        parent: The MLflow parent run the trials' runs nest under.
        emit: Where progress lines go.
        resume: Restore ``search_dir/tune``: finished trials are kept, unfinished ones
            run again, and their existing MLflow runs are continued.

    Raises:
        SearchError: the failure budget (``search.max_failures``) was spent.
        TrackingError: the tracking server went away (every result is kept locally).
        SearchInterrupted: Ctrl-C stopped the trials (their runs are closed as KILLED;
            ``kdforge resume`` continues the search).
    """
    settings = config.search
    known_runs, known_numbers = (
        existing_trial_runs(parent.tracking_uri, parent.run_id) if resume else ({}, {})
    )
    writer = TrackingWriter(parent.tracking_uri, search_dir / JOURNAL_NAME, known_runs)
    failures = FailureFiles(search_dir / FAILURES_DIR)
    logger = MlflowTrialLogger(
        writer,
        parent.experiment_id,
        parent.run_id,
        settings.epochs,
        trial_numbers=known_numbers,
        failures=failures,
    )
    budget = FailureBudget(config.failure_budget)
    printer = ProgressPrinter(
        settings.num_trials,
        settings.epochs,
        emit,
        numbers=logger.trial_numbers,
        failures=failures,
        metric=payload.metric,
    )
    tune_dir = search_dir / TUNE_DIR
    # StateDigestRecorder: what `kdforge resume` may restore.
    recorder = StateDigestRecorder(tune_dir)
    callbacks = [logger, printer, budget, recorder]
    # One process per trial, or a data-parallel trial's workers (distributed_trial).
    trainable = trial_trainable(config, payload)
    concurrent = _max_concurrent(config)
    emit(
        f"searching {plural(settings.num_trials, 'student')} ({config.student.name}), "
        f"{concurrent} at a time, up to {plural(settings.epochs, 'epoch')} each"
    )
    # A local folder, or (bucket/prefix/tune, its filesystem) on an object store.
    tune_path, tune_fs = tune_location(tune_dir)
    if resume and (known_runs or tune.Tuner.can_restore(tune_path, storage_filesystem=tune_fs)):
        # Never start the budget again over a search that has results: a state Ray
        # cannot read (a full disk truncated it) stops the resume, keeping them all.
        tuner = _restore(tune_dir, trainable, callbacks, budget, len(known_runs))
        emit(f"resuming the search in {tune_dir}")
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                # The one scalar ASHA ranks on: the task's metric, best so far.
                metric=payload.metric.val,
                mode=payload.metric.mode,
                search_alg=searcher,
                scheduler=ASHAScheduler(
                    time_attr="training_iteration",
                    max_t=settings.epochs,
                    grace_period=settings.grace_epochs,
                    reduction_factor=settings.reduction_factor,
                ),
                num_samples=settings.num_trials,
                max_concurrent_trials=concurrent,
                time_budget_s=settings.time_budget_s,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                # The search folder, or its place on the object store it mirrors.
                storage_path=tune_storage(search_dir)[0],
                storage_filesystem=tune_fs,
                verbose=0,
                callbacks=callbacks,
                stop=budget.stopper(),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                # A trial whose worker died runs once more before it counts as failed;
                # a trial's own errors end it with a result instead (run_trial).
                failure_config=tune.FailureConfig(max_failures=1),
            ),
        )
    started = time.perf_counter()
    # The per-trial lines are the plain-output progress; a terminal also gets a bar.
    try:
        with (
            _quiet_tune(),
            progress.phase(
                "search", total=settings.num_trials, unit="trials", emit=emit, plain=False
            ) as bar,
            TrialsInterrupt() as interrupt,
        ):
            printer.bar = bar
            grid = tuner.fit()
    except Exception as exc:
        full = disk_full_error(exc, str(search_dir))
        if full is not None:
            raise full from None
        raise
    finally:
        logger.close_open_runs()  # no nested run stays RUNNING, however the trials ended
        writer.flush()  # the last epochs' metrics, queued by the trial logger
    recorder.finish()  # Tune's last experiment checkpoint
    rows = (
        []
        if interrupt.seen
        else rows_from_results(grid, logger.trial_numbers, settings.epochs, payload.metric)
    )
    # Tune's objects hold object-store references and sit in reference cycles; freed by
    # a later garbage collection, after the search has shut its Ray down (or in the next
    # search's Ray, in a notebook), they would make Ray end the process.
    del tuner, grid, trainable
    gc.collect()
    if interrupt.seen:
        logger.kill_open_runs()
        emit(f"search interrupted after {time.perf_counter() - started:.1f}s")
        raise SearchInterrupted(search_dir)
    emit(f"search finished in {time.perf_counter() - started:.1f}s")
    run_ids = logger.run_ids()
    for row in rows:
        row.run_id = run_ids.get(row.trial_id, "")
    if resume:
        retire_lost_trials(writer, {row.trial_id for row in rows}, emit)
    # Kept in the search folder whatever happens next (lost server, failure budget).
    write_csv(rows, search_dir / "leaderboard.csv")
    if budget.disk_full is not None:
        full = disk_full_error(RuntimeError(budget.disk_full), str(search_dir))
        assert full is not None
        raise full
    if budget.exhausted:
        raise SearchError(
            f"stopped the search: {len(budget.failures)} trials failed (search.max_failures "
            f"= {budget.budget}); last reason: {budget.failures[-1]}",
            hint=f"see {search_dir / 'leaderboard.csv'}; fix the cause or raise "
            "search.max_failures",
        )
    if writer.offline:
        raise TrackingError(
            f"MLflow tracking at {parent.tracking_uri} went away during the search "
            f"({writer.error}); all {len(rows)} trial results are kept in {search_dir}",
            hint=f"when the server is back, run `kdforge resume {search_dir}` to log them "
            "and finish the export",
        )
    return rows


def _restore(
    tune_dir: Path, trainable: Any, callbacks: list[Any], budget: FailureBudget, runs: int
) -> tune.Tuner:
    """The Tune experiment in ``tune_dir``, restored with this driver's callbacks.

    Raises:
        SearchError: Ray's state cannot be read (missing, truncated or corrupt);
            nothing was run and every trial's result and MLflow run is kept.
        DiskFullError: reading it failed because the disk is full.
    """
    kept = (
        f"nothing was run, and the {runs} trial runs in MLflow and the files in "
        f"{tune_dir.parent} are kept"
    )
    tune_path, tune_fs = tune_location(tune_dir)
    if not tune.Tuner.can_restore(tune_path, storage_filesystem=tune_fs):
        raise SearchError(
            f"cannot resume: Ray Tune's state in {tune_dir} is missing or incomplete; {kept}",
            hint="free disk space if it was full; the trials' results stay in MLflow and "
            "leaderboard.csv, start a new search to continue",
        )
    try:
        tuner = tune.Tuner.restore(  # opt-in: --trust-state, or digests checked on resume
            tune_path,
            trainable=trainable,
            storage_filesystem=tune_fs,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    except Exception as exc:
        full = disk_full_error(exc, str(tune_dir))
        if full is not None:
            raise full from None
        raise SearchError(
            f"cannot resume: Ray Tune's state in {tune_dir} cannot be read "
            f"({type(exc).__name__}: {first_line(exc)}), e.g. truncated by a full disk; {kept}",
            hint="free disk space if it was full; the trials' results stay in MLflow and "
            "leaderboard.csv, start a new search to continue",
        ) from None
    # The pickled run config holds the killed driver's callbacks, which know neither
    # this process's MLflow runs nor its output. Ray has no public way to replace them
    # on restore, so the run config is reached through the private local tuner;
    # tests/test_private_apis.py fails loudly if Ray changes it.
    internal = tuner._local_tuner
    assert internal is not None  # a local (not Ray client) Tuner
    restored = internal.get_run_config()
    restored.callbacks = callbacks
    restored.stop = budget.stopper()
    restored.failure_config = tune.FailureConfig(max_failures=1)
    return tuner


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Ray Tune's own error logs off: each failure is one kdforge line (and a file).

    Tune logs every errored trial with its whole traceback (30-170 lines); the
    callbacks print the reason and keep the traceback in ``failures/``.
    """
    names = ("ray.tune", "ray.tune.execution.tune_controller", "ray.tune.tune")
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _max_concurrent(config: SearchConfig) -> int:
    """``search.max_concurrent``, or as many trials as the cluster's CPUs hold.

    A data-parallel trial holds ``cpus_per_trial`` CPUs for each of its workers.
    """
    if config.search.max_concurrent:
        return config.search.max_concurrent
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_trial = config.search.cpus_per_trial * config.search.trial_workers
    return max(1, int(cpus // per_trial))


def rows_from_results(
    grid: Any, numbers: dict[str, int], epochs: int, metric: TaskMetric = ACCURACY
) -> list[TrialRow]:
    """Leaderboard rows from a Ray Tune ResultGrid.

    Args:
        grid: The ResultGrid.
        numbers: Trial id -> trial number (creation order).
        epochs: The epoch budget (a trial that ran all of them finished).
        metric: The task's metric (the results' ``val_<name>`` and ``test_<name>``).
    """
    rows: list[TrialRow] = []
    for result in grid:
        metrics = result.metrics or {}
        config = result.config or {}
        trial_id = str(metrics.get("trial_id") or _trial_id_from_path(result.path))
        error = result.error
        arch: dict[str, Any] = {}
        hparams: dict[str, float] = {}
        lr: float | None = None
        with contextlib.suppress(KeyError, TypeError, ValueError):
            arch, hparams, lr = split_config(config)
        last_epoch = metrics.get("epoch")
        failed = error is not None or metrics.get("kdforge_status") == FAILED
        status = trial_status(last_epoch, epochs, error=failed)
        if metrics.get("kdforge_status") == "rejected" and error is None:
            status = "rejected"
        reason = _error_line(error) if error is not None else ""
        if metrics.get("kdforge_status") == FAILED:
            reason = str(metrics.get("kdforge_error", ""))
        checkpoint = None
        if result.checkpoint is not None and status == "finished":
            checkpoint = checkpoint_location(result.checkpoint)
        rows.append(
            TrialRow(
                number=numbers.get(trial_id, len(rows)),
                trial_id=trial_id,
                status=status,
                params=int(metrics["params"]) if "params" in metrics else None,
                val_acc=_num(metrics.get(metric.val)),
                test_acc=_num(metrics.get(metric.test)),
                metric=metric,
                epochs=int(last_epoch or 0),
                lr=lr,
                loss_hparams=hparams,
                arch=arch,
                error=reason,
                checkpoint=checkpoint,
                node_id=str(metrics.get("node_id", "")),
                device=str(metrics.get("device", "")),
                macs=int(v) if (v := _num(metrics.get("macs"))) is not None else None,
                size_bytes=int(v) if (v := _num(metrics.get("size_bytes"))) is not None else None,
                latency_ms=_num(metrics.get("latency_ms")),
                latency_batch_ms=_num(metrics.get("latency_batch_ms")),
                constraint_violation=str(metrics.get("constraint_violation") or ""),
            )
        )
    rows.sort(key=lambda r: r.number)
    return rows


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def _trial_id_from_path(path: str) -> str:
    name = Path(path).name
    parts = name.split("_")
    return parts[1] if len(parts) > 1 else name


def _error_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:300]
    return (lines[-1] if lines else type(error).__name__)[:300]
