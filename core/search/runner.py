"""Runs the Ray Tune part of a search inside the MLflow parent run, then finalizes.

Split from :mod:`kdforge.search.driver` so the planning and checks there import neither Ray
nor MLflow.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge.cluster.ray_init import RayStartup
from kdforge.data import DataSplits
from kdforge.errors import KDForgeError, SearchError, TrackingError
from kdforge.report.leaderboard import TrialRow, format_table, select_best, write_csv
from kdforge.search.driver import (
    SearchPlan,
    SearchResult,
    build_payload,
    make_define_by_run,
    write_summary,
)
from kdforge.search.initial_points import initial_points_for_search
from kdforge.search.trial import run_trial, split_config
from kdforge.teacher.outputs import TeacherOutputs
from kdforge.tracking.store import flatten_params, setup_experiment

__all__ = [
    "SearchServices",
    "execute_search",
    "rows_from_results",
]


def _max_concurrent(plan: SearchPlan) -> int:
    import ray

    if plan.config.search.max_concurrent:
        return plan.config.search.max_concurrent
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return max(1, int(cpus // plan.config.search.cpus_per_trial))


def execute_search(
    plan: SearchPlan,
    splits: DataSplits,
    outputs: TeacherOutputs,
    teacher_acc: dict[str, float],
    search_dir: Path,
    emit: Callable[[str], None],
    services: SearchServices,
    resume: bool = False,
) -> SearchResult:
    """Run the trials in Ray Tune and everything after them (see module docstring).

    ``services`` were started when the search began (:class:`SearchServices`);
    this waits for them, releases Ray as soon as nothing needs it any more (its
    shutdown then overlaps the export and reports), and leaves closing them to the
    caller. With ``resume``, the search folder's Ray Tune experiment is restored
    (finished trials are kept, unfinished ones run again) and its MLflow parent run
    continued.
    """
    import mlflow

    from kdforge.search.state import SearchState

    config = plan.config
    state = SearchState.load(search_dir) if resume else None
    experiment_id, _ = services.wait()
    if state:
        experiment_id = state.experiment_id
    assert experiment_id is not None  # set up by the services of a new search
    if state:
        parent = mlflow.start_run(run_id=state.parent_run_id)
    else:
        parent = mlflow.start_run(
            experiment_id=experiment_id, run_name=f"{config.name}-{search_dir.name}"
        )
        state = SearchState(parent.info.run_id, experiment_id, plan.tracking_uri)
        state.save(search_dir)
    status = "FAILED"
    try:
        parent_id = parent.info.run_id
        if resume:
            _log_resume(search_dir, plan.tracking_uri, emit)
        else:
            _log_parent_start(plan, teacher_acc, search_dir)
            # Each ensemble member's accuracy next to the ensemble's (empty otherwise).
            member_acc = {
                f"teacher_{split}_acc.{name.replace(':', '_')}": value
                for split, accs in (getattr(outputs, "teacher_report", None) or {}).items()
                for name, value in accs.items()
            }
            if member_acc:
                mlflow.log_metrics(member_acc)
            from kdforge.tracking.run_metadata import log_search_metadata

            log_search_metadata(config, plan.teacher, splits)  # tags + dataset input
        rows = _run_tune(
            plan, splits, outputs, search_dir, experiment_id, parent_id, emit, resume=resume
        )
        if not config.baseline.enabled:
            services.release()  # only the baseline's retraining runs on Ray after the trials
        state.phase = "finalizing"
        state.save(search_dir)
        from kdforge.objectives.report import report_objectives

        # Rejected count, latency where needed, Pareto front table/plot (MLflow).
        objective_summary = report_objectives(
            config, plan.space, splits.info, rows, search_dir, plan.tracking_uri, emit
        )
        best = select_best(rows, config.selection)
        write_csv(rows, search_dir / "leaderboard.csv")
        mlflow.log_artifact(str(search_dir / "leaderboard.csv"))
        emit("")
        emit(format_table(rows, best))
        emit("")
        if best is None:
            failed = sum(r.status == "failed" for r in rows)
            raise SearchError(
                f"no trial finished all {config.search.epochs} epochs "
                f"({len(rows)} trials, {failed} failed); see {search_dir / 'leaderboard.csv'}",
                hint="raise search.num_trials or time_budget_s, or lower search.epochs",
            )
        from kdforge.search.finalize import finalize

        summary = finalize(plan, splits, outputs, teacher_acc, best, rows, search_dir, emit)
        services.release()
        summary["num_trials"] = len(rows)
        summary.update(objective_summary)
        summary["parent_run_id"] = parent_id
        from kdforge.search.publish import publish_search

        # Speed-up, registry description, plots, best_config.yaml, report.md/.html.
        publish_search(plan, splits, rows, best, summary, search_dir, emit)
        write_summary(search_dir, summary)
        mlflow.log_artifact(str(search_dir / "summary.json"))
        from kdforge.export.quantize import quantize_after_search

        quantized = quantize_after_search(
            search_dir, config.quantize, tracking_uri=plan.tracking_uri, emit=emit
        )
        if quantized is not None:
            summary["quantize"] = quantized
            write_summary(search_dir, summary)
        state.phase = "done"
        state.save(search_dir)
        status = "FINISHED"
        return SearchResult(search_dir, rows, best, summary, parent_id)
    except KDForgeError:
        raise
    except Exception as exc:
        if _is_connection_error(plan.tracking_uri, exc):
            raise TrackingError(
                f"MLflow tracking at {plan.tracking_uri} stopped answering after the trials "
                f"({type(exc).__name__}); the trial results are kept in {search_dir}",
                hint=f"when the server is back, run `kdforge resume {search_dir}`",
            ) from exc
        raise
    finally:
        # The server may be gone; the run is continued by `kdforge resume`.
        with contextlib.suppress(Exception):
            mlflow.end_run(status=status)


class SearchServices:
    """Ray and the MLflow experiment of a search, started in the background.

    Both take seconds and mostly wait (Ray for the processes it starts, a new SQLite
    store for MLflow's schema migrations), so a search starts them first and loads its
    data and teacher outputs meanwhile; ``benchmarks/search_overhead.py`` measures it.

    Args:
        tracking_uri: The MLflow tracking URI.
        experiment: The experiment to set up (created if needed); None sets none up
            (a resumed search knows its experiment).
        address: Ray cluster address, or None for a local Ray.
        num_cpus: CPUs of a local Ray (default: all).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str | None,
        address: str | None,
        num_cpus: int | None = None,
    ) -> None:
        import threading

        self.tracking_uri = tracking_uri
        self._outcome: dict[str, Any] = {}
        self._tracking: threading.Thread | None = None
        if experiment is not None:
            self._tracking = threading.Thread(
                target=self._setup, args=(experiment,), name="kdforge-mlflow-setup", daemon=True
            )
            self._tracking.start()
        self.ray = RayStartup(address, num_cpus)

    def _setup(self, experiment: str) -> None:
        try:
            self._outcome["id"] = setup_experiment(self.tracking_uri, experiment)
        except BaseException as exc:  # re-raised by wait() in the caller's thread
            self._outcome["error"] = exc

    def wait(self) -> tuple[str | None, bool]:
        """Wait for both; return ``(experiment id or None, whether Ray was started)``.

        Raises:
            TrackingError: the experiment cannot be used at the tracking URI.
            SearchError: the Ray cluster cannot be reached.
        """
        import mlflow

        if self._tracking is not None:
            self._tracking.join()
        started = self.ray.wait()
        if "error" in self._outcome:
            raise self._outcome["error"]
        mlflow.set_tracking_uri(self.tracking_uri)
        return self._outcome.get("id"), started

    def release(self) -> None:
        """Start shutting down a Ray these services started; returns at once."""
        self.ray.release()

    def close(self) -> None:
        """Shut down a Ray these services started and wait for the experiment setup."""
        if self._tracking is not None:
            self._tracking.join()
        self.ray.close()


def _is_connection_error(tracking_uri: str, exc: BaseException) -> bool:
    """True when ``exc`` says a remote tracking server could not be reached."""
    if not tracking_uri.startswith(("http://", "https://")):
        return False
    text = f"{type(exc).__name__} {exc}"
    return any(
        marker in text
        for marker in (
            "ConnectionError",
            "Max retries exceeded",
            "Connection refused",
            "RemoteDisconnected",
            "Failed to establish",
        )
    )


def _log_parent_start(plan: SearchPlan, teacher_acc: dict[str, float], search_dir: Path) -> None:
    import mlflow

    config = plan.config
    mlflow.set_tags(
        {
            "kdforge.role": "search",
            "kdforge.search_dir": str(search_dir),
            "kdforge.teacher": config.teacher.name,
            "kdforge.dataset": config.dataset.name,
            "kdforge.search_space": config.student.name,
            "kdforge.loss": config.loss.name,
        }
    )
    mlflow.log_params(
        {k: str(v)[:500] for k, v in flatten_params(config.model_dump(mode="json")).items()}
    )
    mlflow.log_artifact(str(search_dir / "config.yaml"))
    mlflow.log_metrics(
        {
            "teacher_val_acc": teacher_acc["val"],
            "teacher_test_acc": teacher_acc["test"],
            "teacher_params": float(plan.teacher.num_parameters()),
        }
    )


def _log_resume(search_dir: Path, tracking_uri: str, emit: Callable[[str], None]) -> None:
    """Send trial results journaled while the tracking server was unreachable."""
    import mlflow

    from kdforge.tracking.journal import JOURNAL_NAME, replay_journal

    mlflow.set_tag("kdforge.resumed", "true")
    active = mlflow.active_run()
    assert active is not None  # execute_search started (or continued) the parent run
    known = _existing_trial_runs(tracking_uri, active.info.run_id)[0]
    replayed = replay_journal(search_dir / JOURNAL_NAME, tracking_uri, known)
    if replayed:
        emit(f"logged {replayed} tracking calls kept while MLflow was unreachable")


def _existing_trial_runs(
    tracking_uri: str, parent_id: str
) -> tuple[dict[str, str], dict[str, int]]:
    """Trial id -> nested run id, and trial id -> number, of a parent run's trials."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    ids: dict[str, str] = {}
    numbers: dict[str, int] = {}
    for run in runs:
        trial_id = run.data.tags.get("kdforge.trial_id")
        if trial_id:
            ids[trial_id] = run.info.run_id
            numbers[trial_id] = int(run.data.tags.get("kdforge.trial_number", len(numbers)))
    return ids, numbers


def _run_tune(
    plan: SearchPlan,
    splits: DataSplits,
    outputs: TeacherOutputs,
    search_dir: Path,
    experiment_id: str,
    parent_id: str,
    emit: Callable[[str], None],
    resume: bool = False,
) -> list[TrialRow]:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from kdforge.search.callbacks import MlflowTrialLogger, ProgressPrinter
    from kdforge.search.sampler import make_searcher

    config = plan.config
    settings = config.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # One objective: TPE on val_acc; several: metric/mode lists and NSGA-II. ASHA and
    # the TuneConfig below always rank on the scalar val_acc (kdforge.search.sampler).
    # search.initial_points (checked when the data was loaded) are the first trials.
    searcher = make_searcher(
        config,
        make_define_by_run(plan, splits.info),
        initial_points_for_search(plan, splits.info),
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=settings.epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )
    concurrent = _max_concurrent(plan)
    payload = build_payload(plan, splits, outputs)
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, payload=payload), resources)
    from kdforge.search.callbacks import FailureBudget
    from kdforge.tracking.journal import JOURNAL_NAME, TrackingWriter

    known_runs, known_numbers = (
        _existing_trial_runs(plan.tracking_uri, parent_id) if resume else ({}, {})
    )
    writer = TrackingWriter(plan.tracking_uri, search_dir / JOURNAL_NAME, known_runs)
    logger = MlflowTrialLogger(
        writer, experiment_id, parent_id, settings.epochs, trial_numbers=known_numbers
    )
    progress = ProgressPrinter(settings.num_trials, settings.epochs, emit)
    budget = FailureBudget(config.failure_budget)
    emit(
        f"searching {settings.num_trials} students ({config.student.name}), "
        f"{concurrent} at a time, up to {settings.epochs} epochs each"
    )
    callbacks = [logger, progress, budget]
    tune_dir = search_dir / "tune"
    if resume and tune.Tuner.can_restore(str(tune_dir)):
        tuner = tune.Tuner.restore(
            str(tune_dir),
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
        # The pickled run config holds the callbacks of the killed driver; use fresh ones
        # that know the existing MLflow runs.
        internal = tuner._local_tuner
        assert internal is not None  # a local (not Ray client) Tuner
        restored = internal.get_run_config()
        restored.callbacks = callbacks
        restored.stop = budget.stopper()
        emit(f"resuming the search in {tune_dir}")
    else:
        tuner = None
    if tuner is None:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric="val_acc",
                mode="max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=settings.num_trials,
                max_concurrent_trials=concurrent,
                time_budget_s=settings.time_budget_s,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(search_dir),
                verbose=0,
                callbacks=callbacks,
                stop=budget.stopper(),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
    started = time.perf_counter()
    grid = tuner.fit()
    writer.flush()  # the last epochs' metrics, queued by the trial logger
    emit(f"search finished in {time.perf_counter() - started:.1f}s")
    rows = rows_from_results(grid, logger.trial_numbers, settings.epochs)
    run_ids = logger.run_ids()
    for row in rows:
        row.run_id = run_ids.get(row.trial_id, "")
    if resume:
        _retire_lost_trials(writer, {row.trial_id for row in rows}, emit)
    # Kept in the search folder whatever happens next (lost server, failure budget).
    write_csv(rows, search_dir / "leaderboard.csv")
    if budget.exhausted:
        raise SearchError(
            f"stopped the search: {len(budget.failures)} trials failed (search.max_failures "
            f"= {budget.budget}); last reason: {budget.failures[-1]}",
            hint=f"see {search_dir / 'leaderboard.csv'}; fix the cause or raise "
            "search.max_failures",
        )
    if writer.offline:
        from kdforge.errors import TrackingError

        raise TrackingError(
            f"MLflow tracking at {plan.tracking_uri} went away during the search "
            f"({writer.error}); all {len(rows)} trial results are kept in {search_dir}",
            hint=f"when the server is back, run `kdforge resume {search_dir}` to log them "
            "and finish the export",
        )
    return rows


def _retire_lost_trials(writer: Any, kept: set[str], emit: Callable[[str], None]) -> None:
    """Close the runs of trials the killed driver started but Ray never recorded.

    Such a trial is not part of the resumed search (Ray samples a new one in its
    place), so its run is ended as KILLED and moved to MLflow's trash (restorable).
    """
    lost = {key: run_id for key, run_id in writer.run_ids.items() if key not in kept}
    for key, run_id in lost.items():
        try:
            writer.client.set_tag(run_id, "kdforge.status", "lost")
            writer.client.set_terminated(run_id, "KILLED")
            writer.client.delete_run(run_id)
        except Exception as exc:  # tracking trouble must not fail a finished search
            emit(f"could not retire the run of lost trial {key}: {exc}")
    if lost:
        emit(f"retired {len(lost)} MLflow run(s) of trials lost with the killed driver")


def rows_from_results(grid: Any, numbers: dict[str, int], epochs: int) -> list[TrialRow]:
    """Leaderboard rows from a Ray Tune ResultGrid."""
    from kdforge.search.callbacks import trial_status

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
        status = trial_status(last_epoch, epochs, error=error is not None)
        if metrics.get("kdforge_status") == "rejected" and error is None:
            status = "rejected"
        checkpoint = None
        if result.checkpoint is not None and status == "finished":
            checkpoint = result.checkpoint.path
        rows.append(
            TrialRow(
                number=numbers.get(trial_id, len(rows)),
                trial_id=trial_id,
                status=status,
                params=int(metrics["params"]) if "params" in metrics else None,
                val_acc=_num(metrics.get("val_acc")),
                test_acc=_num(metrics.get("test_acc")),
                epochs=int(last_epoch or 0),
                lr=lr,
                loss_hparams=hparams,
                arch=arch,
                error=_error_line(error) if error is not None else "",
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
