"""A search under way: what its steps share once the data and the teacher are ready.

:class:`SearchRun` is built once per search by :func:`prepare_run` (data loaded and
checked against the teacher, the space bound to the teacher, initial points checked,
teacher outputs computed or read from the cache, the trial payload built). The driver
(:mod:`kdforge.search.driver`) holds it and hands each step the fields it needs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kdforge.config import LossConfig, PluginRef
from kdforge.config.objective_settings import resolve_objectives
from kdforge.data import ACCURACY, DataSplits
from kdforge.errors import ConfigError
from kdforge.objectives.constraints import trial_objectives_for
from kdforge.plugin_host.resolve import check_loss_fits_task, instantiate
from kdforge.search.checks import (
    check_data_against_teacher,
    check_split_against_teacher,
    check_student_space,
    describe_splits,
    teacher_gap_warning,
)
from kdforge.search.initial_points import initial_points_for_search
from kdforge.search.plan import SearchPlan, resolve_loss
from kdforge.search.trial import TrialPayload
from kdforge.teacher.cache import cache_dir_for, prepare_teacher_outputs, share_mode
from kdforge.teacher.inference import TeacherInference
from kdforge.teacher.outputs import TeacherOutputs, training_inputs
from kdforge.training.supported_tasks import require_causal_space, require_workflow_task

__all__ = ["LoadedData", "SearchRun", "build_payload", "load_data", "prepare_run", "with_task"]


@dataclass(frozen=True)
class LoadedData:
    """The loaded, checked data of a search, its flattened initial points and the plan
    completed with the task (and the objectives named after its metric)."""

    splits: DataSplits
    initial_points: list[dict[str, Any]]
    plan: SearchPlan


@dataclass(frozen=True)
class SearchRun:
    """What the steps of one search share.

    Attributes:
        plan: The resolved plugins and settings.
        search_dir: The search folder.
        splits: The data.
        outputs: The teacher's outputs (cached, or an online teacher).
        teacher_acc: The teacher's ``val`` and ``test`` accuracy.
        initial_points: ``search.initial_points`` under the sampler's names.
        payload: What every trial (and the baseline) shares, built once.
        resume: True for ``kdforge resume``.
        emit: Where progress lines go.
    """

    plan: SearchPlan
    search_dir: Path
    splits: DataSplits
    outputs: TeacherOutputs
    teacher_acc: dict[str, float]
    initial_points: list[dict[str, Any]]
    payload: TrialPayload
    resume: bool
    emit: Callable[[str], None]


def load_data(plan: SearchPlan) -> LoadedData:
    """Load the data and the teacher and check them together, before anything costly.

    The space is bound to the teacher (a space may copy its layers) and the initial
    points are checked against the bound space, so a bad point costs no teacher
    outputs, no Ray and no MLflow.

    Raises:
        DataError, ConfigError: naming the split, key or plugin at fault.
    """
    splits = plan.dataset.load(plan.config.dataset.split_seed)
    plan, splits = with_task(plan, splits)
    config = plan.config
    plan.teacher.load()
    check_data_against_teacher(
        splits, plan.teacher, config.teacher.name, plan.task, dataset=config.dataset
    )
    check_split_against_teacher(config.dataset, splits, plan.teacher, config.teacher.name)
    # The space suggests differently once it is bound (e.g. transformer copies layers).
    plan.space.bind_teacher(plan.teacher)
    plan.space.bind_data(splits)  # e.g. hf_lm: the corpus vocabulary, pruning calibration
    check_student_space(splits, plan.space, config.student.name)
    points = initial_points_for_search(config, plan.space, plan.loss_settings, splits.info)
    return LoadedData(splits, points, plan)


def with_task(plan: SearchPlan, splits: DataSplits) -> tuple[SearchPlan, DataSplits]:
    """The plan with its task and objectives settled, and the splits the task prepared.

    The config's ``task`` wins; without one the data's (``DataInfo.task``) is used.
    The targets are checked against the task, the loss against its outputs, and the
    default objective becomes the task's metric (``val_r2`` for regression).

    Raises:
        DataError: targets that do not fit the task (naming the split).
        ConfigError: a loss that cannot read the task's outputs, an objective that is
            not the task's metric.
    """
    config = plan.config
    task = plan.task or instantiate("task", PluginRef(name=splits.info.task), "task")
    require_workflow_task(task, config.dataset.name, "kdforge search")
    task.check(splits)
    if "loss" not in config.model_fields_set and config.loss.name != task.default_loss:
        # No loss in the config: the task's own (hinton_kd for classification).
        config = config.model_copy(update={"loss": LossConfig(name=task.default_loss)})
        loss_cls, loss_params, loss_settings = resolve_loss(config)
        plan = replace(
            plan,
            config=config,
            loss_cls=loss_cls,
            loss_params=loss_params,
            loss_settings=loss_settings,
            loss_needs=loss_cls.needs(loss_params),
        )
    check_loss_fits_task(config.loss.name, plan.loss_params, task)
    _check_sparse_teacher(config.loss.name, plan, task.output_kind)
    require_causal_space(task, plan.space, f"student space {config.student.name!r}")
    metric = task.selection_metric
    objectives = resolve_objectives(
        config.objectives,
        metric,
        explicit="objectives" in config.model_fields_set,
        task=task.name,
    )
    config = config.model_copy(update={"objectives": objectives})
    return replace(plan, config=config, task=task), task.prepare(splits)


def _check_sparse_teacher(loss_name: str, plan: SearchPlan, output_kind: str) -> None:
    """Refuse a per-position top-k cache for a loss that cannot read its sparse form.

    ``teacher_cache.top_k`` on per-position logits keeps the k largest per position
    (:class:`~kdforge.data.TopKLogits`); only losses that read that form (``lm_kd``)
    may train on it: the others would need the dense ``(n, T, V)`` logits.
    """
    settings = plan.config.teacher_cache
    if output_kind != "token_logits" or settings.top_k is None:
        return
    if settings.mode == "online" or not settings.enabled:
        return  # no cache entry: the loss gets the teacher's dense logits
    if plan.space.needs_dense_teacher:
        # Renormalising over a trimmed vocabulary needs every kept token's logit; a
        # top-k cache lacks most of them. Said here, before any trial fails on it.
        raise ConfigError(
            f"teacher_cache.top_k: the students of space {plan.config.student.name!r} need "
            "the teacher's dense logits (a trimmed vocabulary renormalises them over its "
            "tokens)",
            hint="remove teacher_cache.top_k (teacher_cache.mode: online keeps nothing on "
            "disk), or set student.params.vocab: full",
        )
    if not plan.loss_cls.reads_top_k(plan.loss_params):
        raise ConfigError(
            f"teacher_cache.top_k: loss {loss_name!r} cannot read per-position top-k teacher "
            "logits (it needs the full (rows, positions, vocabulary) logits)",
            hint="use loss lm_kd (also inside composite), or remove teacher_cache.top_k",
        )


def prepare_run(
    plan: SearchPlan,
    data: LoadedData,
    search_dir: Path,
    emit: Callable[[str], None],
    *,
    resume: bool,
    ray_ready: Callable[[], object] | None = None,
) -> SearchRun:
    """Compute (or read) the teacher's outputs and build the trial payload.

    Teacher outputs are computed once per (teacher, data) and cached on disk, with
    features only when the loss reads them; the teacher runs online in the trials
    when training inputs are augmented. Outputs that are not cached are computed
    where ``teacher_inference`` says (as a Ray job on a cluster: ``ray_ready`` waits
    for the Ray the search starts in the background).
    """
    config = plan.config
    emit(describe_splits(data.splits, plan.task))
    started = time.perf_counter()
    settings = config.teacher_cache
    on_cluster = bool(plan.address or os.environ.get("RAY_ADDRESS"))
    outputs = prepare_teacher_outputs(
        plan.teacher,
        data.splits,
        settings,
        cache_dir=cache_dir_for(settings, config.output_dir),
        needs=plan.loss_needs,
        share=share_mode(settings, on_cluster=on_cluster),
        emit=emit,
        inference=TeacherInference(
            config.teacher_inference,
            teacher_ref=config.teacher,
            on_cluster=on_cluster,
            ray_ready=ray_ready,
        ),
    )
    if plan.task is not None:
        outputs = outputs.in_task_units(plan.task)
    teacher_acc = outputs.accuracy(data.splits, plan.task)
    metric = plan.metric
    emit(
        f"teacher {config.teacher.name}: {plan.teacher.num_parameters():,} params, "
        f"{metric.val}={teacher_acc['val']:.4f} {metric.test}={teacher_acc['test']:.4f} "
        f"(outputs ready in {time.perf_counter() - started:.1f}s)"
        + ("; held-out split: test (teacher.held_out)" if config.teacher.held_out == "test" else "")
    )
    # The gap test is a binomial one: it speaks of accuracy only.
    warning = (
        teacher_gap_warning(
            teacher_acc, len(data.splits.val), len(data.splits.test), config.teacher.held_out
        )
        if metric == ACCURACY
        else None
    )
    if warning:
        emit(warning)
    return SearchRun(
        plan=plan,
        search_dir=search_dir,
        splits=data.splits,
        outputs=outputs,
        teacher_acc=teacher_acc,
        initial_points=data.initial_points,
        payload=build_payload(plan, data.splits, outputs),
        resume=resume,
        emit=emit,
    )


def build_payload(plan: SearchPlan, splits: DataSplits, outputs: TeacherOutputs) -> TrialPayload:
    """The data every trial shares, as one object for Ray's object store."""
    settings = plan.config.search
    train = training_inputs(splits)
    return TrialPayload(
        info=splits.info,
        train_x=train.x,
        train_y=train.y,
        teacher_train_logits=outputs.train if outputs.has_logits else None,
        val_x=splits.val.x,
        val_y=splits.val.y,
        test_x=splits.test.x,
        test_y=splits.test.y,
        space=plan.space,
        loss_cls=plan.loss_cls,
        loss_params=plan.loss_params,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        weight_decay=settings.weight_decay,
        seed=plan.config.seed,
        threads=max(1, int(settings.cpus_per_trial)),
        gpus=settings.gpus_per_trial,
        precision=settings.precision,
        teacher_train_features=outputs.train_features,
        objectives=trial_objectives_for(plan.config, plan.latency_exporter),
        online_teacher=outputs.online_teacher,
        task=plan.task,
    )
