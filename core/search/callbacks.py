"""Ray Tune callbacks of a search: nested MLflow runs and terminal progress.

Both run in the driver process. MLflow logging from the driver means trials on any
node of a cluster are tracked without reaching the tracking server themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback, Stopper

from kdforge.interfaces import SearchSpace
from kdforge.tracking.journal import TrackingWriter
from kdforge.tracking.run_metadata import status_reason
from kdforge.tracking.store import finite_metrics, flatten_params

__all__ = ["FailureBudget", "MlflowTrialLogger", "ProgressPrinter", "trial_status"]

_METRIC_KEYS = (
    "val_acc",
    "epoch_val_acc",
    "val_loss",
    "test_acc",
    "train_loss",
    "train_kd",
    "train_ce",
)
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
    ):
        self.writer = writer
        self._experiment_id = experiment_id
        self._parent = parent_run_id
        self._epochs = epochs
        self._last_epoch: dict[str, int] = {}
        self._static_logged: set[str] = set()
        self.trial_numbers: dict[str, int] = dict(trial_numbers or {})

    def _run_for(self, trial: Any) -> str:
        key = str(trial.trial_id)
        if key not in self.trial_numbers:
            self.trial_numbers[key] = trial_number(trial, self.trial_numbers)
        if key not in self.writer.run_ids:
            self.writer.create_run(
                key,
                self._experiment_id,
                run_name=f"trial-{self.trial_numbers[key]:03d}",
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
        """Create the nested run and log the sampled configuration."""
        self._run_for(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Log one epoch's metrics at step = epoch."""
        key = self._run_for(trial)
        epoch = int(result.get("epoch", 0))
        self._last_epoch[key] = epoch
        now = int(time.time() * 1000)
        # Every loss part the trial reports (train_kd, train_ce, train_fitnets, ...).
        wanted = [k for k in result if k in _METRIC_KEYS or k.startswith("train_")]
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
        """Close the run as FINISHED, tagged finished or stopped early."""
        key = self._run_for(trial)
        status = trial_status(self._last_epoch.get(key), self._epochs, error=False)
        self.writer.set_tag(key, "kdforge.status", status)

        last = getattr(trial, "last_result", None) or {}
        reason = status_reason(status, self._last_epoch.get(key), self._epochs, last)
        self.writer.set_tag(key, "kdforge.status_reason", reason)
        self.writer.set_terminated(key, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the run as FAILED with the error's last line as reason."""
        key = self._run_for(trial)
        self.writer.set_tag(key, "kdforge.status", "failed")
        self.writer.set_tag(key, "kdforge.error", error_summary(trial))
        self.writer.set_tag(key, "kdforge.status_reason", f"failed: {error_summary(trial)}"[:500])
        self.writer.set_terminated(key, "FAILED")

    def run_ids(self) -> dict[str, str]:
        """Trial id -> nested run id (of runs created while online)."""
        return dict(self.writer.run_ids)


class FailureBudget(Callback):
    """Counts failed trials; :meth:`stopper` ends the search once the budget is spent."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.failures: list[str] = []

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Remember the failure and its reason."""
        self.failures.append(error_summary(trial))

    @property
    def exhausted(self) -> bool:
        """True once ``budget`` trials have failed."""
        return len(self.failures) >= self.budget

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


def error_summary(trial: Any) -> str:
    """The last meaningful line of a failed trial's error (its reason)."""
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file:
        try:
            with open(error_file, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError:
            text = ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial raised an error"


class ProgressPrinter(Callback):
    """Prints one line per finished trial, so long searches show their progress."""

    def __init__(self, total: int, epochs: int, emit: Callable[[str], None] = print):
        self._total = total
        self._epochs = epochs
        self._emit = emit
        self._done = 0
        self._started: dict[str, float] = {}
        self._last: dict[str, dict] = {}
        self._best = -1.0

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
        acc = last.get("val_acc")
        if isinstance(acc, int | float) and acc > self._best:
            self._best = float(acc)
        acc_text = f"val_acc={acc:.4f}" if isinstance(acc, int | float) else "val_acc=-"
        params = last.get("params")
        params_text = f"params={int(params):,}" if params is not None else "params=-"
        best = f"best={self._best:.4f}" if self._best >= 0 else "best=-"
        self._emit(
            f"[{self._done:>3}/{self._total}] trial {trial.trial_id} {status:<8} {acc_text} "
            f"{params_text} epochs={last.get('epoch', 0)} ({elapsed:.1f}s) {best}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Print the finished (or early-stopped) trial."""
        last = self._last.get(trial.trial_id, {})
        if last.get("kdforge_status") == "rejected":
            self._line(trial, "rejected")
            return
        self._line(trial, trial_status(last.get("epoch"), self._epochs, error=False))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Print the failed trial."""
        self._line(trial, "failed")
