"""Ray Tune callbacks of a search: nested MLflow runs and terminal progress.

Both run in the driver process. MLflow logging from the driver means trials on any
node of a cluster are tracked without reaching the tracking server themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from kdforge.tracking import finite_metrics, flatten_params

__all__ = ["MlflowTrialLogger", "ProgressPrinter", "trial_status"]

_METRIC_KEYS = (
    "val_acc",
    "epoch_val_acc",
    "val_loss",
    "test_acc",
    "train_loss",
    "train_kd",
    "train_ce",
)


def trial_status(last_epoch: int | None, epochs: int, error: bool) -> str:
    """``failed``, ``finished`` (all epochs) or ``stopped`` (early, by the scheduler)."""
    if error:
        return "failed"
    if last_epoch is not None and last_epoch >= epochs:
        return "finished"
    return "stopped"


class MlflowTrialLogger(Callback):
    """One nested MLflow run per trial: sampled params, per-epoch metrics, status."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, epochs: int):
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri)
        self._experiment_id = experiment_id
        self._parent = parent_run_id
        self._epochs = epochs
        self._runs: dict[str, str] = {}
        self._last_epoch: dict[str, int] = {}
        self.trial_numbers: dict[str, int] = {}

    def _run_for(self, trial: Any) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            number = len(self.trial_numbers)
            self.trial_numbers[trial.trial_id] = number
            run = self._client.create_run(
                self._experiment_id,
                run_name=f"trial-{number:03d}",
                tags={
                    "mlflow.parentRunId": self._parent,
                    "kdforge.trial_id": trial.trial_id,
                    "kdforge.role": "trial",
                },
            )
            run_id = run.info.run_id
            self._runs[trial.trial_id] = run_id
            from mlflow.entities import Param

            params = [Param(k, str(v)) for k, v in flatten_params(trial.config).items()]
            if params:
                self._client.log_batch(run_id, params=params)
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Create the nested run and log the sampled configuration."""
        self._run_for(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Log one epoch's metrics at step = epoch."""
        from mlflow.entities import Metric

        run_id = self._run_for(trial)
        epoch = int(result.get("epoch", 0))
        self._last_epoch[trial.trial_id] = epoch
        now = int(time.time() * 1000)
        values = finite_metrics({k: result[k] for k in _METRIC_KEYS if k in result})
        metrics = [Metric(k, v, now, epoch) for k, v in values.items()]
        if "params" in result:
            metrics.append(Metric("params", float(result["params"]), now, 0))
        self._client.log_batch(run_id, metrics=metrics)
        if result.get("node_id") and epoch == 1:
            self._client.set_tag(run_id, "kdforge.node_id", str(result["node_id"]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the run as FINISHED, tagged finished or stopped early."""
        run_id = self._run_for(trial)
        status = trial_status(self._last_epoch.get(trial.trial_id), self._epochs, error=False)
        self._client.set_tag(run_id, "kdforge.status", status)
        self._client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the run as FAILED with the error's last line as reason."""
        run_id = self._run_for(trial)
        self._client.set_tag(run_id, "kdforge.status", "failed")
        self._client.set_tag(run_id, "kdforge.error", error_summary(trial))
        self._client.set_terminated(run_id, "FAILED")

    def run_ids(self) -> dict[str, str]:
        """Trial id -> nested run id."""
        return dict(self._runs)


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
        self._line(trial, trial_status(last.get("epoch"), self._epochs, error=False))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Print the failed trial."""
        self._line(trial, "failed")
