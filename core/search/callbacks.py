"""Ray Tune callbacks of a search: nested MLflow runs and terminal progress.

Both run in the driver process. MLflow logging from the driver means trials on any
node of a cluster are tracked without reaching the tracking server themselves.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper

from kdforge.data import ACCURACY, TaskMetric
from kdforge.errors import disk_full_error
from kdforge.interfaces import SearchSpace
from kdforge.progress import Bar
from kdforge.search.trial import FAILED
from kdforge.tracking.journal import TrackingWriter
from kdforge.tracking.run_metadata import status_reason
from kdforge.tracking.store import finite_metrics, flatten_params
from kdforge.wording import trial_name

__all__ = [
    "FailureBudget",
    "FailureFiles",
    "MlflowTrialLogger",
    "ProgressPrinter",
    "trial_status",
]

_METRIC_KEYS = ("val_loss", "train_loss", "train_kd", "train_ce")
# The task's metric comes as val_<name>, epoch_val_<name> and test_<name> (val_acc, ...).
_METRIC_PREFIXES = ("val_", "epoch_val_", "test_", "train_")
# Reported every epoch but constant per trial: logged once at step 0.
_STATIC_KEYS = ("params", "macs", "size_bytes", "latency_ms")


def trial_status(last_epoch: int | None, epochs: int, error: bool) -> str:
    """``failed``, ``finished`` (all epochs) or ``stopped`` (early, by the scheduler)."""
    if error:
        return "failed"
    if last_epoch is not None and last_epoch >= epochs:
        return "finished"
    return "stopped"


class MlflowTrialLogger(Callback):
    """One nested MLflow run per trial: sampled params, per-epoch metrics, status.

    Calls go through a :class:`~kdforge.tracking.journal.TrackingWriter`, so a tracking server
    that goes away mid-search costs no result: they are journaled in the search folder.

    Args:
        writer: The tracking writer (holds the known trial runs when resuming).
        experiment_id: MLflow experiment of the search.
        parent_run_id: The search's parent run.
        epochs: Epoch budget of a trial (to tell finished from stopped early).
        trial_numbers: Trial id -> number of trials that already exist (resume).
    """

    def __init__(
        self,
        writer: TrackingWriter,
        experiment_id: str,
        parent_run_id: str,
        epochs: int,
        trial_numbers: dict[str, int] | None = None,
        failures: FailureFiles | None = None,
    ):
        self.writer = writer
        self._experiment_id = experiment_id
        self._parent = parent_run_id
        self._epochs = epochs
        self._last_epoch: dict[str, int] = {}
        self._static_logged: set[str] = set()
        self._closed: set[str] = set()
        self.trial_numbers: dict[str, int] = dict(trial_numbers or {})
        self._failures = failures
        # Runs of a killed driver: a trial Tune starts again gets a fresh run instead.
        self._inherited: set[str] = set(writer.run_ids)
        self._open: set[str] = set()

    def _run_for(self, trial: Any) -> str:
        key = str(trial.trial_id)
        if key not in self.trial_numbers:
            self.trial_numbers[key] = trial_number(trial, self.trial_numbers)
        if key not in self.writer.run_ids:
            self._open.add(key)
            self.writer.create_run(
                key,
                self._experiment_id,
                run_name=trial_name(self.trial_numbers[key]),
                tags={
                    "mlflow.parentRunId": self._parent,
                    "kdforge.trial_id": key,
                    "kdforge.trial_number": str(self.trial_numbers[key]),
                    "kdforge.role": "trial",
                },
            )
            config = dict(trial.config)
            if isinstance(config.get("student"), dict):
                # `_` keys (rebuild-only constants, e.g. a long recipe) as short digests.
                config["student"] = SearchSpace.shown_arch(config["student"])
            params = {k: str(v) for k, v in flatten_params(config).items()}
            self.writer.log_batch(key, params=params)
        return key

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Create the nested run and log the sampled configuration.

        A trial of a resumed search that Tune runs again (it was running, or its end
        was not saved, when the driver died) starts from epoch 1: its old run is
        retired and a fresh one holds the new epochs, never both.
        """
        key = str(trial.trial_id)
        if key in self._inherited:
            self._inherited.discard(key)
            self._retire(key, "restarted")
        self._run_for(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A worker died and Tune runs the trial once more: a fresh run for the retry."""
        key = str(trial.trial_id)
        if self._failures is not None:
            self._failures.write(trial, self.trial_numbers, _error_text(trial), retried=True)
        if key in self.writer.run_ids:
            self._retire(key, "retried")
        self._last_epoch.pop(key, None)
        self._static_logged.discard(key)

    def _retire(self, key: str, why: str) -> None:
        """End run ``key`` as KILLED, tagged ``why``, and move it to MLflow's trash."""
        run_id = self.writer.run_ids.pop(key, None)
        self._open.discard(key)
        if run_id is None or self.writer.offline:
            return
        try:
            self.writer.client.set_tag(run_id, "kdforge.status", why)
            self.writer.client.set_terminated(run_id, "KILLED")
            self.writer.client.delete_run(run_id)
        except Exception as exc:  # tracking trouble must not stop the search
            warnings.warn(f"could not retire MLflow run {run_id}: {exc}", stacklevel=2)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Log one epoch's metrics at step = epoch."""
        key = self._run_for(trial)
        if result.get("kdforge_status") == FAILED:
            return  # the failure's last result: closed by on_trial_complete
        epoch = int(result.get("epoch", 0))
        self._last_epoch[key] = epoch
        now = int(time.time() * 1000)
        # Every loss part the trial reports (train_kd, train_ce, train_fitnets, ...).
        wanted = [k for k in result if k in _METRIC_KEYS or k.startswith(_METRIC_PREFIXES)]
        values = finite_metrics({k: result[k] for k in wanted})
        metrics = [(k, v, now, epoch) for k, v in values.items()]
        if key not in self._static_logged:
            self._static_logged.add(key)
            statics = finite_metrics({k: result[k] for k in _STATIC_KEYS if k in result})
            metrics.extend((k, v, now, 0) for k, v in statics.items())
        # Queued: the trial waits for the driver after each report (kdforge.tracking.journal).
        self.writer.log_metrics_later(key, metrics)
        if result.get("node_id") and epoch == 1:
            self.writer.set_tag(key, "kdforge.node_id", str(result["node_id"]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the run as FINISHED, tagged finished or stopped early (FAILED if it failed)."""
        key = self._run_for(trial)
        last = getattr(trial, "last_result", None) or {}
        if last.get("kdforge_status") == FAILED:
            reason = str(last.get("kdforge_error", ""))
            self._fail(trial, key, reason, last.get("kdforge_traceback"))
            return
        self._open.discard(key)
        status = trial_status(self._last_epoch.get(key), self._epochs, error=False)
        self.writer.set_tag(key, "kdforge.status", status)
        reason = status_reason(status, self._last_epoch.get(key), self._epochs, last)
        self.writer.set_tag(key, "kdforge.status_reason", reason)
        self.writer.set_terminated(key, "FINISHED")
        self._closed.add(key)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the run as FAILED with the error's last line as reason."""
        self._fail(trial, self._run_for(trial), error_summary(trial), _error_text(trial))

    def _fail(self, trial: Any, key: str, reason: str, text: str | None) -> None:
        """Close run ``key`` as FAILED, with its traceback as a file and an artifact."""
        self._open.discard(key)
        self.writer.set_tag(key, "kdforge.status", "failed")
        self.writer.set_tag(key, "kdforge.error", reason[:500])
        self.writer.set_tag(key, "kdforge.status_reason", f"failed: {reason}"[:500])
        if self._failures is not None and text:
            path = self._failures.write(trial, self.trial_numbers, text)
            self.writer.log_artifact(key, str(path))
        self.writer.set_terminated(key, "FAILED")
        self._closed.add(key)

    def kill_open_runs(self) -> None:
        """End as KILLED the runs of the trials an interrupt stopped.

        ``kdforge resume`` runs those trials again and continues their runs.
        """
        for key in self.writer.run_ids:
            if key not in self._closed:
                self.writer.set_tag(key, "kdforge.status", "interrupted")
                self.writer.set_terminated(key, "KILLED")

    def close_open_runs(self) -> None:
        """End every run still open (trials Tune stopped without a result) as KILLED.

        Called after the trials, however they ended, so no nested run stays RUNNING.
        """
        for key in sorted(self._open):
            if key in self.writer.run_ids:
                self.writer.set_tag(key, "kdforge.status", "stopped")
                self.writer.set_terminated(key, "KILLED")
        self._open.clear()

    def run_ids(self) -> dict[str, str]:
        """Trial id -> nested run id (of runs created while online)."""
        return dict(self.writer.run_ids)


class FailureFiles:
    """Writes each failed trial's traceback to ``FOLDER/trial-NNN.txt``.

    Args:
        folder: Where (the search folder's ``failures/``); created on first use.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, trial: Any, numbers: dict[str, int]) -> Path:
        """The file of ``trial`` (by its number)."""
        number = numbers.get(str(trial.trial_id), trial_number(trial, numbers))
        return self.folder / f"trial-{number:03d}.txt"

    def write(self, trial: Any, numbers: dict[str, int], text: str, retried: bool = False) -> Path:
        """Write (or, for a retried attempt, append to) the file of ``trial``."""
        path = self.path_for(trial, numbers)
        self.folder.mkdir(parents=True, exist_ok=True)
        head = "attempt failed, retried once:\n" if retried else ""
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{head}{text.rstrip()}\n")
        return path


class FailureBudget(Callback):
    """Counts failed trials; :meth:`stopper` ends the search once the budget is spent."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.failures: list[str] = []

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Remember the failure and its reason."""
        self.failures.append(error_summary(trial))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial that reported its own failure counts too."""
        last = getattr(trial, "last_result", None) or {}
        if last.get("kdforge_status") == FAILED:
            self.failures.append(str(last.get("kdforge_error", "trial failed")))

    @property
    def disk_full(self) -> str | None:
        """The reason of a failure that was a full disk (no later trial can do better)."""
        return next((f for f in self.failures if disk_full_error(RuntimeError(f))), None)

    @property
    def exhausted(self) -> bool:
        """True once ``budget`` trials have failed, or one failed on a full disk."""
        return len(self.failures) >= self.budget or self.disk_full is not None

    def stopper(self) -> _BudgetStopper:
        """A Tune stopper that stops every trial once the budget is exhausted."""
        return _BudgetStopper(self)


class _BudgetStopper(Stopper):
    def __init__(self, budget: FailureBudget) -> None:
        self._budget = budget

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self._budget.exhausted

    def stop_all(self) -> bool:
        return self._budget.exhausted


def trial_number(trial: Any, known: dict[str, int]) -> int:
    """The 0-based order in which the searcher created ``trial``.

    Tune's experiment tag starts with its creation counter (``"3_depth=..."``); start
    order can differ between runs when trials start concurrently, creation order can't.
    """
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    if head.isdigit():
        return int(head) - 1
    return max(known.values(), default=-1) + 1


def _error_text(trial: Any) -> str:
    """The text of a Tune trial error (Ray's traceback), or empty."""
    error_file = getattr(trial, "error_file", None)
    if error_file:
        try:
            with open(error_file, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""
    return ""


def error_summary(trial: Any) -> str:
    """The last meaningful line of a failed trial's error (its reason)."""
    text = _error_text(trial)
    if "actor is dead" in text or "worker process has died" in text:
        # Ray's message is a paragraph of possible causes; one line says what happened.
        kind = re.search(r"Worker exit type: (\w+)", text)
        cause = kind.group(1) if kind else "unknown"
        return f"its Ray worker died (exit type {cause}: killed, out of memory or crashed)"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial raised an error"


class ProgressPrinter(Callback):
    """Prints one line per finished trial, so long searches show their progress.

    Trials are named as everywhere else (``trial 013``, creation order): ``numbers`` is
    the trial logger's own map, shared so both name a trial alike. ``bar``, when set,
    is the search phase's progress bar (:mod:`kdforge.progress`), advanced per trial.
    """

    def __init__(
        self,
        total: int,
        epochs: int,
        emit: Callable[[str], None] = print,
        numbers: dict[str, int] | None = None,
        failures: FailureFiles | None = None,
        metric: TaskMetric = ACCURACY,
    ):
        self._metric = metric
        self._failures = failures
        self._total = total
        self._epochs = epochs
        self._emit = emit
        self._numbers = numbers if numbers is not None else {}
        self.bar: Bar | None = None
        self._done = 0
        self._started: dict[str, float] = {}
        self._last: dict[str, dict] = {}
        self._best: float | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Remember when the trial started."""
        self._started[trial.trial_id] = time.perf_counter()

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Remember the trial's latest metrics."""
        self._last[trial.trial_id] = result

    def _line(self, trial: Any, status: str) -> None:
        self._done += 1
        last = self._last.get(trial.trial_id, {})
        elapsed = time.perf_counter() - self._started.get(trial.trial_id, time.perf_counter())
        metric = self._metric
        acc = last.get(metric.val)
        scored = isinstance(acc, int | float)
        if scored and (self._best is None or metric.rank(acc) < metric.rank(self._best)):
            self._best = float(acc)  # type: ignore[arg-type]
        acc_text = f"{metric.val}={acc:.4f}" if isinstance(acc, int | float) else f"{metric.val}=-"
        params = last.get("params")
        params_text = f"params={int(params):,}" if params is not None else "params=-"
        best = f"best={self._best:.4f}" if self._best is not None else "best=-"
        key = str(trial.trial_id)
        if key not in self._numbers:
            self._numbers[key] = trial_number(trial, self._numbers)
        self._emit(
            f"[{self._done:>3}/{self._total}] {trial_name(self._numbers[key])} {status:<8} "
            f"{acc_text} {params_text} epochs={last.get('epoch', 0)} ({elapsed:.1f}s) {best}"
        )
        if self.bar is not None:
            self.bar.advance(note=best)

    def _failed_line(self, trial: Any, reason: str) -> None:
        """One line for a failed trial: its reason, and where its traceback is."""
        self._done += 1
        key = str(trial.trial_id)
        if key not in self._numbers:
            self._numbers[key] = trial_number(trial, self._numbers)
        where = ""
        if self._failures is not None:
            where = f" (traceback: {self._failures.path_for(trial, self._numbers)})"
        head = f"[{self._done:>3}/{self._total}] {trial_name(self._numbers[key])}"
        self._emit(f"{head} failed: {reason}{where}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Say that a trial whose worker died runs once more."""
        key = str(trial.trial_id)
        name = trial_name(self._numbers[key]) if key in self._numbers else f"trial {key}"
        self._emit(f"      {name}: {error_summary(trial)}; retrying it once")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Print the finished (or early-stopped, or failed) trial."""
        last = self._last.get(trial.trial_id, {})
        if last.get("kdforge_status") == FAILED:
            self._failed_line(trial, str(last.get("kdforge_error", "")))
            return
        if last.get("kdforge_status") == "rejected":
            self._line(trial, "rejected")
            return
        self._line(trial, trial_status(last.get("epoch"), self._epochs, error=False))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Print the failed trial."""
        self._failed_line(trial, error_summary(trial))
