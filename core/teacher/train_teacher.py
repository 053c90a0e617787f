"""``kdforge train-teacher``: train a teacher for a dataset and save a kdforge checkpoint.

The architecture comes from a search-space plugin with fixed values (e.g. a wide
``mlp``), so the checkpoint can be rebuilt by name. The run is logged to MLflow with
the checkpoint as an artifact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kdforge import progress
from kdforge.checkpoint import save_checkpoint
from kdforge.config import PluginRef, TeacherConfig, resolve_tracking_uri
from kdforge.errors import ConfigError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugin_host.split_record import split_record, split_tag
from kdforge.tracking.registry import log_registered_teacher
from kdforge.tracking.store import (
    check_tracking_uri,
    log_files,
    log_numeric_metrics,
    log_params,
    log_tags,
    open_run,
    setup_experiment,
)
from kdforge.training.evaluate import count_parameters, evaluate
from kdforge.training.supported_tasks import (
    require_causal_space,
    require_space_outputs,
    require_workflow_task,
)
from kdforge.training.trainer import TrainSettings, train_model
from kdforge.wording import plural

__all__ = ["train_teacher"]


def _check_output(path: Path) -> None:
    if path.exists() and path.is_dir():
        raise ConfigError(f"output: {path} is a directory, expected a file path")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".kdforge-probe-{time.time_ns()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output: cannot write to {folder}: {exc}") from None


def train_teacher(
    config: TeacherConfig,
    *,
    tracking_uri: str | None = None,
    emit: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, evaluate, save and log a teacher; return its metrics and path."""

    dataset = instantiate("dataset", config.dataset, "dataset")
    space = instantiate("search_space", PluginRef(name=config.architecture.name), "architecture")
    output = Path(config.output).resolve()
    _check_output(output)
    uri = resolve_tracking_uri(tracking_uri or config.tracking.uri)
    check_tracking_uri(uri, emit=emit)
    # A dataset that gives the teacher its own view (Split.teacher_x) trains it there.
    raw_splits = dataset.load(config.dataset.split_seed).for_teacher()
    task = instantiate("task", config.task or PluginRef(name=raw_splits.info.task), "task")
    require_workflow_task(task, config.dataset.name, "kdforge train-teacher")
    task.check(raw_splits)
    splits = task.prepare(raw_splits)
    require_space_outputs(space, splits.info, f"architecture {config.architecture.name!r}")
    require_causal_space(task, space, f"architecture {config.architecture.name!r}")
    metric = task.selection_metric
    arch = dict(config.architecture.params)
    torch.manual_seed(config.seed)
    try:
        model = space.build(arch, splits.info)
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"architecture.params: cannot build {config.architecture.name!r} from {arch}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    n_params = count_parameters(model)
    emit(
        f"training teacher {config.name!r}: {config.architecture.name} {arch}, "
        f"{n_params:,} params, {plural(config.training.epochs, 'epoch')} on {splits.info.name}"
    )
    started = time.perf_counter()
    bar: list[progress.Bar] = []

    def on_epoch(report: Any) -> bool:
        bar[0].advance(note=f"loss={report.train_loss:.4f} {metric.val}={report.val_acc:.4f}")
        return False

    settings = TrainSettings(
        epochs=config.training.epochs,
        lr=config.training.lr,
        batch_size=config.training.batch_size,
        weight_decay=config.training.weight_decay,
        seed=config.seed,
    )
    # A bar, or off a terminal a line every tenth of the epochs (at regular epochs).
    with progress.phase(
        "teacher training", total=config.training.epochs, unit="epochs", emit=emit
    ) as epochs_bar:
        bar.append(epochs_bar)
        result = train_model(
            model,
            x=splits.train.x,
            y=splits.train.y,
            val_x=splits.val.x,
            val_y=splits.val.y,
            settings=settings,
            on_epoch=on_epoch,
            task=task,
        )
    test_acc, _ = evaluate(model, splits.test.x, splits.test.y, task)
    metrics = {
        metric.val: result.best_val_acc,
        metric.test: test_acc,
        "params": n_params,
        "train_time_s": time.perf_counter() - started,
    }
    save_checkpoint(
        output,
        space=config.architecture.name,
        arch=arch,
        info=splits.info,
        model=model,
        meta={
            **metrics,
            "dataset": config.dataset.name,
            "seed": config.seed,
            "name": config.name,
            # Which rows it trained on: a search refuses to test on them.
            "split": split_record(config.dataset, raw_splits),
        },
        # Rebuilt with the task's head, a teacher predicts in the data's own units.
        task=task.record() if task.name != "classification" else None,
    )
    experiment_id = setup_experiment(uri, config.tracking.experiment)
    with open_run(f"teacher-{config.name}", experiment_id=experiment_id) as run_id:
        split = split_tag(split_record(config.dataset, raw_splits, hash_rows=False))
        log_tags(
            {
                "kdforge.role": "teacher",
                "kdforge.dataset": config.dataset.name,
                "kdforge.split": split,
            }
        )
        log_params(
            {
                "architecture": config.architecture.name,
                "dataset.split_seed": config.dataset.split_seed,
                **{f"arch.{k}": v for k, v in arch.items()},
            }
        )
        log_numeric_metrics(metrics)
        log_files(output)
        registered: dict[str, Any] = {}
        if config.registered_model_name:
            registered = log_registered_teacher(
                task.with_head(model).eval(),
                splits.train.x,
                config.registered_model_name,
                config.registered_model_alias,
                uri,
                tags={"kdforge.split": split},
            )
    emit(
        f"teacher saved to {output}: {metric.test}={test_acc:.4f} "
        f"{metric.val}={result.best_val_acc:.4f} "
        f"params={n_params:,} (MLflow run {run_id})"
    )
    if registered:
        emit(f"teacher registered as {registered['uri']} (version {registered['version']})")
    return {**metrics, "path": str(output), "run_id": run_id, **registered}
