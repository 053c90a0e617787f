"""Runs the Ray Tune part of a search inside the MLflow parent run, then finalizes.

Split from :mod:`kdforge.search` so the planning and checks there import neither Ray
nor MLflow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge.data import DataSplits
from kdforge.errors import SearchError
from kdforge.leaderboard import TrialRow, format_table, select_best, write_csv
from kdforge.search import (
    SearchPlan,
    SearchResult,
    _init_ray,
    build_payload,
    make_define_by_run,
    write_summary,
)
from kdforge.teacher_outputs import TeacherOutputs
from kdforge.tracking import flatten_params, setup_experiment
from kdforge.trial import run_trial, split_config

__all__ = ["execute_search", "rows_from_results"]


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
) -> SearchResult:
    """Run the trials in Ray Tune and everything after them (see module docstring)."""
    import mlflow

    config = plan.config
    experiment_id = setup_experiment(plan.tracking_uri, config.tracking.experiment)
    started_ray = _init_ray(plan.address)
    parent = mlflow.start_run(experiment_id=experiment_id, run_name=f"{config.name}-{search_dir.name}")
    status = "FAILED"
    try:
        parent_id = parent.info.run_id
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
        rows = _run_tune(plan, splits, outputs, search_dir, experiment_id, parent_id, emit)
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
        from kdforge.finalize import finalize

        summary = finalize(plan, splits, outputs, teacher_acc, best, rows, search_dir, emit)
        summary["num_trials"] = len(rows)
        summary["parent_run_id"] = parent_id
        write_summary(search_dir, summary)
        mlflow.log_artifact(str(search_dir / "summary.json"))
        status = "FINISHED"
        return SearchResult(search_dir, rows, best, summary, parent_id)
    finally:
        mlflow.end_run(status=status)
        if started_ray:
            import ray

            ray.shutdown()


def _run_tune(
    plan: SearchPlan,
    splits: DataSplits,
    outputs: TeacherOutputs,
    search_dir: Path,
    experiment_id: str,
    parent_id: str,
    emit: Callable[[str], None],
) -> list[TrialRow]:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from kdforge.callbacks import MlflowTrialLogger, ProgressPrinter

    config = plan.config
    settings = config.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler: optuna.samplers.BaseSampler
    if settings.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=config.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=config.seed, multivariate=True)
    searcher = OptunaSearch(
        space=make_define_by_run(plan, splits.info),
        metric="val_acc",
        mode="max",
        sampler=sampler,
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=settings.epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )
    concurrent = _max_concurrent(plan)
    payload = build_payload(plan, splits, outputs, threads=max(1, int(settings.cpus_per_trial)))
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, payload=payload), resources)
    logger = MlflowTrialLogger(plan.tracking_uri, experiment_id, parent_id, settings.epochs)
    progress = ProgressPrinter(settings.num_trials, settings.epochs, emit)
    emit(
        f"searching {settings.num_trials} students ({config.student.name}), "
        f"{concurrent} at a time, up to {settings.epochs} epochs each"
    )
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
            callbacks=[logger, progress],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    emit(f"search finished in {time.perf_counter() - started:.1f}s")
    return rows_from_results(grid, logger.trial_numbers, settings.epochs)


def rows_from_results(grid: Any, numbers: dict[str, int], epochs: int) -> list[TrialRow]:
    """Leaderboard rows from a Ray Tune ResultGrid."""
    from kdforge.callbacks import trial_status

    rows = []
    for result in grid:
        metrics = result.metrics or {}
        config = result.config or {}
        trial_id = str(metrics.get("trial_id") or _trial_id_from_path(result.path))
        error = result.error
        arch, hparams, lr = {}, {}, None
        try:
            arch, hparams, lr = split_config(config)
        except (KeyError, TypeError, ValueError):
            pass
        last_epoch = metrics.get("epoch")
        status = trial_status(last_epoch, epochs, error=error is not None)
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
