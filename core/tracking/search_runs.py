"""The MLflow runs of a search: the parent run, its trials' nested runs, and resuming them.

A search logs into one parent run (tags, the config as params and artifact, teacher
metrics, dataset inputs); each trial is a nested run created by the trial logger
(:mod:`kdforge.search.callbacks`). A resumed search continues the parent run, sends
what was journaled while the server was unreachable (:mod:`kdforge.tracking.journal`)
and retires the runs of trials that the killed driver started but Ray never recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kdforge.config import SearchConfig
from kdforge.tracking.journal import JOURNAL_NAME, TrackingWriter, replay_journal
from kdforge.tracking.store import flatten_params

# MLflow (~1.5 s to import) is imported inside the functions that log: a search then
# imports it in the background while its data loads (kdforge.search.services).
__all__ = [
    "ParentRun",
    "end_parent_run",
    "existing_trial_runs",
    "is_connection_error",
    "log_search_start",
    "log_to_trial_runs",
    "open_parent_run",
    "replay_journaled_calls",
    "retire_lost_trials",
]

_CONNECTION_MARKERS = (
    "ConnectionError",
    "Max retries exceeded",
    "Connection refused",
    "RemoteDisconnected",
    "Failed to establish",
)


@dataclass(frozen=True)
class ParentRun:
    """The MLflow parent run of a search.

    Attributes:
        tracking_uri: The tracking store.
        experiment_id: The search's experiment.
        run_id: The parent run.
    """

    tracking_uri: str
    experiment_id: str
    run_id: str


def open_parent_run(
    tracking_uri: str, experiment_id: str, run_name: str, run_id: str | None = None
) -> ParentRun:
    """Start the search's parent run, or continue ``run_id`` (a resumed search).

    The run becomes MLflow's active run: the steps after the trials log into it.
    """
    import mlflow

    if run_id is not None:
        run = mlflow.start_run(run_id=run_id)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name)
    return ParentRun(tracking_uri, experiment_id, run.info.run_id)


def end_parent_run(status: str) -> None:
    """End the active parent run with ``status``, quietly when the server is gone.

    A search that lost its tracking server continues the run with ``kdforge resume``.
    """
    import mlflow

    with contextlib.suppress(Exception):
        mlflow.end_run(status=status)


def log_search_start(
    config: SearchConfig,
    search_dir: Path,
    teacher_params: int,
    teacher_acc: Mapping[str, float],
    member_acc: Mapping[str, Mapping[str, float]],
) -> None:
    """Tag the active parent run and log the config and the teacher's metrics.

    Args:
        config: The search config (logged flat as params, and as ``config.yaml``).
        search_dir: The search folder (holds ``config.yaml``).
        teacher_params: The teacher's parameter count.
        teacher_acc: The teacher's ``val`` and ``test`` accuracy.
        member_acc: Per split, each ensemble member's accuracy (empty otherwise).
    """
    import mlflow

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
            "teacher_params": float(teacher_params),
        }
    )
    # Each ensemble member's accuracy next to the ensemble's.
    members = {
        f"teacher_{split}_acc.{name.replace(':', '_')}": value
        for split, accs in member_acc.items()
        for name, value in accs.items()
    }
    if members:
        mlflow.log_metrics(members)


def replay_journaled_calls(search_dir: Path, tracking_uri: str) -> int:
    """Mark the active parent run resumed and send the calls journaled while offline.

    Returns:
        The number of tracking calls sent.
    """
    import mlflow

    mlflow.set_tag("kdforge.resumed", "true")
    active = mlflow.active_run()
    assert active is not None  # the driver started (or continued) the parent run
    known = existing_trial_runs(tracking_uri, active.info.run_id)[0]
    return replay_journal(search_dir / JOURNAL_NAME, tracking_uri, known)


def existing_trial_runs(tracking_uri: str, parent_id: str) -> tuple[dict[str, str], dict[str, int]]:
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


def retire_lost_trials(writer: TrackingWriter, kept: set[str], emit: Callable[[str], None]) -> None:
    """Close the runs of trials the killed driver started but Ray never recorded.

    Such a trial is not part of the resumed search (Ray samples a new one in its
    place), so its run is ended as KILLED and moved to MLflow's trash (restorable).

    Args:
        writer: The search's tracking writer (knows every trial run it created).
        kept: Trial ids of the resumed search's results.
        emit: Where progress lines go.
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


def log_to_trial_runs(
    tracking_uri: str, updates: Mapping[str, tuple[Mapping[str, float], Mapping[str, str]]]
) -> None:
    """Add metrics (at step 0) and tags to trial runs after the trials ended.

    Args:
        tracking_uri: The tracking store.
        updates: Nested run id -> ``(metrics, tags)``.
    """
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    for run_id, (metrics, tags) in updates.items():
        if metrics:
            client.log_batch(
                run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
            )
        for key, value in tags.items():
            client.set_tag(run_id, key, value)


def is_connection_error(tracking_uri: str, exc: BaseException) -> bool:
    """True when ``exc`` says a remote tracking server could not be reached."""
    if not tracking_uri.startswith(("http://", "https://")):
        return False
    text = f"{type(exc).__name__} {exc}"
    return any(marker in text for marker in _CONNECTION_MARKERS)
