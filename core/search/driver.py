"""The search driver: config in, searched and distilled student out.

The driver alone orders the steps of a search; each step gets the values it needs:

1. :func:`~kdforge.search.plan.plan_search`: plugins resolved, settings checked;
2. :func:`~kdforge.search.run.load_data`: data and teacher loaded and checked;
3. Ray and the MLflow experiment start in the background
   (:class:`~kdforge.search.services.SearchServices`) while
   :func:`~kdforge.search.run.prepare_run` computes the teacher's outputs;
4. the MLflow parent run opens (or, on resume, is continued);
5. :func:`~kdforge.search.tune.run_trials`: Ray Tune trials, one nested run each;
6. :func:`~kdforge.objectives.report.report_objectives`: rejected students, latency
   where needed, the Pareto front;
7. the student to export is chosen and its checkpoint loaded, once;
8. the distillation gain (:mod:`kdforge.search.baseline`), export, registration and
   promotion (:mod:`kdforge.search.finalize`), the speed-up and the reports
   (:mod:`kdforge.search.publish`), optional int8 quantization;
9. ``summary.json``, built here from what the steps returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from kdforge.cluster.ray_init import check_ray_address
from kdforge.config import SearchConfig, load_search_config
from kdforge.errors import KDForgeError, SearchError, TrackingError
from kdforge.export.quantize import quantize_after_search
from kdforge.objectives.costs import LatencyResult, measure_latency_with
from kdforge.objectives.report import report_objectives
from kdforge.report.bounds import crowded_bounds
from kdforge.report.leaderboard import TrialRow, format_table, select_best, write_csv
from kdforge.search.baseline import measure_distillation_gain
from kdforge.search.finalize import (
    describe_rows,
    export_and_register,
    print_result,
    save_student,
    student_summary,
)
from kdforge.search.folder import (
    SearchState,
    new_search_dir,
    remove_if_unstarted,
    write_config,
    write_summary,
)
from kdforge.search.plan import SearchPlan, plan_search
from kdforge.search.publish import measure_student_speedup, publish_reports
from kdforge.search.ranges import searched_ranges
from kdforge.search.remote import check_storage, open_search_dir, sync_search_dir
from kdforge.search.run import SearchRun, load_data, prepare_run
from kdforge.search.sampler import DefineByRun, make_searcher
from kdforge.search.services import SearchServices
from kdforge.search.state_digest import check_state_digests
from kdforge.search.trial import load_trial_model
from kdforge.search.tune import TUNE_DIR, run_trials
from kdforge.storage import display, local_checkpoint
from kdforge.tracking.run_metadata import kdforge_version, log_search_metadata
from kdforge.tracking.search_runs import (
    ParentRun,
    end_parent_run,
    is_connection_error,
    log_search_start,
    open_parent_run,
    replay_journaled_calls,
)
from kdforge.tracking.store import check_tracking_uri, log_files, log_numeric_metrics
from kdforge.wording import plural, trial_name

__all__ = ["TUNE_ENVIRONMENT", "SearchResult", "resume_search", "run_search"]

#: Ray Tune settings kdforge uses unless the environment sets them, applied when a
#: search starts (not at import).
TUNE_ENVIRONMENT = {
    # Tune's CSV/JSON/TensorBoard loggers cost time per result and duplicate MLflow.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # kdforge prints its own progress lines.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Save which trials finished at most 1 s apart instead of Ray's adaptive >= 10 s,
    # so `kdforge resume` after a crash re-runs as little as possible.
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
}


@dataclass
class SearchResult:
    """What a finished search produced."""

    search_dir: Path
    rows: list[TrialRow]
    best: TrialRow | None
    summary: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None


def run_search(
    config: SearchConfig,
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    emit: Callable[[str], None] = print,
) -> SearchResult:
    """Run a whole search: data, teacher outputs, Ray Tune, MLflow, baseline, export.

    Args:
        config: The validated search config.
        tracking_uri: Overrides ``tracking.uri``.
        address: Ray cluster address; overrides ``search.address``.
        emit: Where progress lines go.
    """
    plan = plan_search(config, tracking_uri=tracking_uri, address=address)
    _preflight(plan, emit)
    search_dir = new_search_dir(config)
    write_config(search_dir, config)
    emit(f"kdforge search {config.name!r} -> {display(search_dir)}")
    try:
        return _run(plan, search_dir, emit, state=None)
    except BaseException:
        # Failed before it started (bad data, bad teacher): leave no folder behind.
        remove_if_unstarted(search_dir)
        raise


def resume_search(
    search_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    emit: Callable[[str], None] = print,
    trust_state: bool = False,
) -> SearchResult:
    """Continue a search whose driver died (or whose tracking server went away).

    Finished trials are kept and not re-run, unfinished ones start again, the MLflow
    parent run is continued, journaled tracking calls are sent, and the search ends
    as usual (leaderboard, baseline, export, registry).

    Args:
        search_dir: The search folder (``output_dir/NAME/TIMESTAMP``), or its URI on
            an object store (``s3://bucket/runs/NAME/TIMESTAMP``; the endpoint, before
            the config is read, from ``AWS_ENDPOINT_URL``).
        tracking_uri: Overrides the URI the search used.
        address: Ray cluster address to join.
        emit: Where progress lines go.
        trust_state: Restore Ray state files kdforge did not record (``--trust-state``).
    """
    folder = open_search_dir(search_dir)  # a URI: downloaded, without the checkpoints
    state = SearchState.load(folder)
    check_state_digests(folder / TUNE_DIR, trust=trust_state)  # before Ray unpickles them
    config = load_search_config(folder / "config.yaml")
    plan = plan_search(config, tracking_uri=tracking_uri or state.tracking_uri, address=address)
    _preflight(plan, emit)
    emit(f"kdforge resume {config.name!r} <- {display(folder)} (was {state.phase})")
    return _run(plan, folder, emit, state=state)


def _preflight(plan: SearchPlan, emit: Callable[[str], None]) -> None:
    """Fail before any data loads when the tracking store or the cluster is unusable."""
    for key, value in TUNE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    check_storage(plan.config)  # s3:// locations: bucket, endpoint, credentials
    check_tracking_uri(plan.tracking_uri, emit=emit)
    check_ray_address(plan.address)


def _run(
    plan: SearchPlan, search_dir: Path, emit: Callable[[str], None], state: SearchState | None
) -> SearchResult:
    data = load_data(plan)
    plan = data.plan  # the task settled by the data, the objectives named after it
    # Started only now, so bad data costs no Ray start; they come up while the
    # teacher's outputs are computed.
    experiment = None if state else plan.config.tracking.experiment
    services = SearchServices(plan.tracking_uri, experiment, plan.address)
    try:
        run = prepare_run(
            plan, data, search_dir, emit, resume=state is not None, ray_ready=services.ray.wait
        )
        experiment_id, _ = services.wait()
        return _execute(run, services, state, experiment_id)
    finally:
        services.close()
        if (search_dir / "state.json").exists():  # started: the store gets what it made
            sync_search_dir(search_dir)


def _execute(
    run: SearchRun, services: SearchServices, state: SearchState | None, experiment_id: str | None
) -> SearchResult:
    plan, config, emit = run.plan, run.plan.config, run.emit
    if state is None:
        assert experiment_id is not None  # the services of a new search set it up
        parent = open_parent_run(
            plan.tracking_uri, experiment_id, f"{config.name}-{run.search_dir.name}"
        )
        state = SearchState(parent.run_id, parent.experiment_id, plan.tracking_uri)
        state.save(run.search_dir)
    else:
        parent = open_parent_run(
            plan.tracking_uri, state.experiment_id, "", run_id=state.parent_run_id
        )
    status = "FAILED"
    try:
        _log_start(run, parent)
        searcher = make_searcher(
            config,
            DefineByRun(plan.space, run.splits.info, config.search.lr, plan.loss_settings),
            run.initial_points,
        )
        rows = run_trials(
            config, searcher, run.payload, run.search_dir, parent, emit, resume=run.resume
        )
        describe_rows(plan.space, rows)
        if not config.baseline.enabled:
            services.release()  # only the baseline's retraining runs on Ray after the trials
        state.phase = "finalizing"
        state.save(run.search_dir)
        objectives = report_objectives(
            config, rows, _latency_of(run), run.search_dir, plan.tracking_uri, emit
        )
        best = _choose(config, rows, run.search_dir, emit)
        summary = _finish(run, rows, best, services, parent, objectives)
        state.phase = "done"
        state.save(run.search_dir)
        status = "FINISHED"
        return SearchResult(run.search_dir, rows, best, summary, parent.run_id)
    except KeyboardInterrupt:
        status = "KILLED"  # Ctrl-C: the search can be resumed from its folder
        raise
    except KDForgeError:
        raise
    except Exception as exc:
        if is_connection_error(plan.tracking_uri, exc):
            raise TrackingError(
                f"MLflow tracking at {plan.tracking_uri} stopped answering after the trials "
                f"({type(exc).__name__}); the trial results are kept in {run.search_dir}",
                hint=f"when the server is back, run `kdforge resume {run.search_dir}`",
            ) from exc
        raise
    finally:
        end_parent_run(status)


def _log_start(run: SearchRun, parent: ParentRun) -> None:
    """A new search describes itself on its parent run; a resumed one sends its journal."""
    if run.resume:
        replayed = replay_journaled_calls(run.search_dir, parent.tracking_uri)
        if replayed:
            run.emit(f"logged {replayed} tracking calls kept while MLflow was unreachable")
        return
    teacher = run.plan.teacher
    log_search_start(
        run.plan.config,
        run.search_dir,
        teacher.num_parameters(),
        run.teacher_acc,
        run.outputs.teacher_report,
    )
    log_search_metadata(run.plan.config, teacher, run.splits)  # tags + dataset input


def _latency_of(run: SearchRun) -> Callable[[TrialRow], LatencyResult]:
    """Measures a finished trial's student, with its trained weights, in ONNX Runtime."""
    plan, info = run.plan, run.splits.info

    def measure(row: TrialRow) -> LatencyResult:
        if row.checkpoint:
            model = load_trial_model(plan.space, row.arch, info, local_checkpoint(row.checkpoint))
        else:  # weights do not change latency
            model = plan.space.build(dict(row.arch), info)
        return measure_latency_with(model, info, plan.config.latency, plan.latency_exporter)

    return measure


def _choose(
    config: SearchConfig, rows: list[TrialRow], search_dir: Path, emit: Callable[[str], None]
) -> TrialRow:
    """The student to export by ``selection``; the leaderboard written and printed.

    Raises:
        SearchError: no trial finished all its epochs.
    """
    best = select_best(rows, config.selection)
    log_files(write_csv(rows, search_dir / "leaderboard.csv"))
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
    return best


def _finish(
    run: SearchRun,
    rows: list[TrialRow],
    best: TrialRow,
    services: SearchServices,
    parent: ParentRun,
    objectives: dict[str, Any],
) -> dict[str, Any]:
    """The steps after the choice; returns the summary, built from their results."""
    plan, config, emit, search_dir = run.plan, run.plan.config, run.emit, run.search_dir
    assert best.checkpoint is not None  # select_best only picks trials that kept one
    checkpoint = local_checkpoint(best.checkpoint)  # downloaded when Tune's storage is remote
    student: nn.Module = load_trial_model(plan.space, best.arch, run.splits.info, checkpoint)
    result = student_summary(
        config,
        search_dir,
        best,
        student,
        run.splits.test,
        plan.teacher.num_parameters(),
        run.teacher_acc,
        run.outputs.forward_calls,
        plan.task,
    )
    save_student(
        search_dir,
        config.student.name,
        best,
        run.splits.info,
        student,
        result["student_test_acc"],
        plan.task,
    )
    gain: dict[str, Any] = {}
    if config.baseline.enabled:
        emit(
            f"distillation gain: training {trial_name(best.number)}'s architecture with "
            f"{plural(config.baseline.seeds, 'seed')}, distilled and from scratch ..."
        )
        gain = measure_distillation_gain(
            run.payload, best, config.baseline.seeds, config.search.cpus_per_trial, emit
        )
    so_far = {**result, **gain}
    metric = plan.metric
    log_numeric_metrics(metric.named(so_far, with_metric=False))
    # Exported, registered and served with the task's head: answers in the data's units.
    served = plan.task.with_head(student).eval() if plan.task is not None else student
    exported: dict[str, Any] = {}
    if plan.exporter is not None:
        exported = export_and_register(
            config,
            plan.exporter,
            served,
            run.splits.test,
            {**so_far, **metric.named({})},  # _acc keys; tags are named after `metric`
            search_dir,
            emit,
            run.splits.info,
            plan.task,
        )
    print_result(so_far, emit, metric)
    services.release()
    test = run.splits.test
    speed = measure_student_speedup(plan.teacher, student, test.x, emit, test.teacher_x)
    range_warnings = crowded_bounds(rows, searched_ranges(plan, run.splits.info))
    for line in range_warnings:
        emit(line)
    summary = {
        **result,
        **gain,
        **exported,
        "num_trials": len(rows),
        **objectives,
        "parent_run_id": parent.run_id,
        "kdforge_version": kdforge_version(),
        "tracking_uri": plan.tracking_uri,
        "teacher": config.teacher.name,
        "dataset": config.dataset.name,
        **speed,
        "range_warnings": range_warnings,
    }
    # Registry description, plots, best_config.yaml, report.md/.html.
    # Reports read the _acc keys and name them after the metric the summary carries.
    publish_reports(config, rows, best, {**summary, **metric.named({})}, search_dir, emit)
    _write_summary(search_dir, metric.named(summary))
    quantized = quantize_after_search(
        search_dir, config.quantize, tracking_uri=plan.tracking_uri, emit=emit
    )
    if quantized is not None:
        summary = {**summary, "quantize": quantized}
        write_summary(search_dir, metric.named(summary))
    # In-process readers (kdforge.distill's result) read the _acc keys, named by `metric`.
    return {**summary, **metric.named({})}


def _write_summary(search_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` and log it to the parent run."""
    log_files(write_summary(search_dir, summary))
