"""One Ray Tune trial: build the sampled student, distill it, report every epoch.

This module runs inside Ray workers, so it imports only what a trial needs. The
teacher's outputs usually arrive precomputed in :class:`TrialPayload` (cached logits
and features); only when the training inputs are randomly augmented does the trial
run the teacher itself, on every batch, through ``payload.online_teacher``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from torch import nn

from kdforge.data import ACCURACY, DataInfo, Inputs, TaskMetric
from kdforge.interfaces import LossStrategy, PluginParams, SearchSpace, Task
from kdforge.objectives.constraints import TrialObjectives, measure_trial, rejected_result
from kdforge.teacher.cached_rows import CachedRows
from kdforge.teacher.online import OnlineTeacher
from kdforge.training.distributed import DataParallel
from kdforge.training.evaluate import count_parameters, evaluate
from kdforge.training.trainer import (
    EpochReport,
    TrainingDiverged,
    TrainResult,
    TrainSettings,
    train_model,
)

__all__ = [
    "FAILED",
    "STATE_FILE",
    "EpochReporter",
    "PreparedTrial",
    "TrialPayload",
    "failed_result",
    "load_trial_model",
    "prepare_trial",
    "run_trial",
    "split_config",
    "start_progress",
    "train_on_payload",
    "train_prepared",
    "trial_device",
    "trial_seed",
]

STATE_FILE = "student.pt"


@dataclass
class TrialPayload:
    """Everything a trial needs, stored once in Ray's object store."""

    info: DataInfo
    train_x: Inputs  # a tensor, or LazyInputs streamed from disk (kdforge.batching)
    train_y: torch.Tensor
    # In memory on both paths: n x classes floats (None: an embedding-only teacher).
    teacher_train_logits: torch.Tensor | None
    val_x: Inputs
    val_y: torch.Tensor
    test_x: Inputs
    test_y: torch.Tensor
    space: SearchSpace
    loss_cls: type[LossStrategy]
    loss_params: PluginParams
    epochs: int
    batch_size: int
    weight_decay: float
    seed: int
    threads: int
    # GPUs reserved per trial (Ray sets CUDA_VISIBLE_DEVICES) and the training precision.
    gpus: float = 0.0
    precision: str = "fp32"
    # Named teacher features of the training rows, only when the loss needs them.
    teacher_train_features: dict[str, torch.Tensor] = field(default_factory=dict)
    # Limits checked before training, and how latency is measured.
    objectives: TrialObjectives | None = None
    # When inputs are augmented: the teacher runs on every training batch instead of
    # the cached logits (which are then empty).
    online_teacher: OnlineTeacher | None = None
    # What the targets are (its state learned from the training rows); None: classification.
    task: Task | None = None

    @property
    def metric(self) -> TaskMetric:
        """The task's selection metric (names the reported results)."""
        return self.task.selection_metric if self.task is not None else ACCURACY


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], float]:
    """Split a sampled trial config into ``(arch, loss hparams, lr)``."""
    arch = dict(config.get("student", {}))
    loss_hparams = {k: float(v) for k, v in dict(config.get("loss", {})).items()}
    return arch, loss_hparams, float(config["lr"])


def trial_seed(base_seed: int, config: dict[str, Any]) -> int:
    """A per-trial seed from the search seed and the sampled values.

    Ray's trial ids are random, so they would make reruns differ; the same sampled
    configuration under the same search seed always gets the same seed.
    """
    text = json.dumps(config, sort_keys=True, default=str)
    digest = int(hashlib.sha256(f"{base_seed}:{text}".encode()).hexdigest()[:8], 16)
    return digest % (2**31 - 1)


def load_trial_model(
    space: SearchSpace, arch: dict[str, Any], info: DataInfo, checkpoint: str | Path
) -> nn.Module:
    """A finished trial's student with its best-validation weights, in eval mode.

    Args:
        space: The search space that built it.
        arch: Its sampled architecture.
        info: The data description.
        checkpoint: The trial's checkpoint folder (holding :data:`STATE_FILE`).
    """
    model = space.build(dict(arch), info)
    state = torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def trial_device(gpus: float) -> str:
    """``cuda`` when the trial was given a GPU (whole or fractional) and one is visible."""
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


#: ``kdforge_status`` of the last result of a trial whose training raised.
FAILED = "failed"


def run_trial(config: dict[str, Any], payload: TrialPayload) -> None:
    """Ray Tune function trainable: distill one sampled student.

    Reports ``val_<metric>`` (best so far, what the scheduler and sampler use; ``val_acc``
    for classification), ``epoch_val_<metric>``, ``test_<metric>`` (of the
    best-validation weights), losses,
    ``params`` and ``epoch`` after each epoch; the last epoch carries a checkpoint
    with the best-validation weights.

    An error of the trial itself (a NaN loss, a plugin that raises, a full disk) ends
    it with one last result, ``kdforge_status: failed`` with the reason and the
    traceback, instead of an exception: Ray then prints no traceback, and only what
    kills a worker is a Tune error (retried once, ``FailureConfig``).
    """
    progress = start_progress(payload.metric)
    try:
        _run_trial(config, payload, progress)
    except (StopIteration, GeneratorExit):
        raise  # Ray's own ways of ending a trial
    except Exception as exc:
        tune.report(failed_result(exc, progress))


def start_progress(metric: TaskMetric) -> dict[str, Any]:
    """A trial's progress before its first epoch (what a failure then reports)."""
    return {"epoch": 0, "metric": metric, metric.val: metric.failed_value}


def failed_result(exc: BaseException, progress: dict[str, Any]) -> dict[str, Any]:
    """The last result of a trial that raised ``exc`` after ``progress``."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if isinstance(exc, TrainingDiverged):
        reason = lines[0] if lines else reason
    metric: TaskMetric = progress["metric"]
    return {
        **progress.get("last", {}),  # the last epoch's metrics (params, val_acc) stay
        "epoch": int(progress["epoch"]),
        metric.val: float(progress[metric.val]),
        "kdforge_status": FAILED,
        "kdforge_error": reason[:500],
        "kdforge_traceback": traceback.format_exc()[-50_000:],
        "node_id": ray.get_runtime_context().get_node_id(),
    }


@dataclass
class PreparedTrial:
    """A trial's student built and measured, before training."""

    seed: int
    arch: dict[str, Any]
    loss_hparams: dict[str, float]
    lr: float
    model: nn.Module
    costs: dict[str, Any]
    n_params: int
    node_id: str
    device: str


def prepare_trial(
    config: dict[str, Any], payload: TrialPayload, progress: dict[str, Any]
) -> PreparedTrial | None:
    """Seed, build and measure the sampled student; None once a rejection is reported.

    Costs (params, MACs, size; latency if needed) are measured before training, and a
    student over a configured limit is reported as rejected without being trained.
    """
    torch.set_num_threads(max(1, payload.threads))
    node_id = ray.get_runtime_context().get_node_id()
    seed = trial_seed(payload.seed, config)
    torch.manual_seed(seed)
    arch, loss_hparams, lr = split_config(config)
    model = payload.space.build(arch, payload.info)
    n_params = count_parameters(model)
    costs, violation = measure_trial(model, payload.info, payload.objectives)
    if violation is not None:
        tune.report({**rejected_result(costs, violation, payload.metric), "node_id": node_id})
        return None
    progress["last"] = {**costs, "params": n_params}
    return PreparedTrial(
        seed, arch, loss_hparams, lr, model, costs, n_params, node_id, trial_device(payload.gpus)
    )


class EpochReporter:
    """``on_epoch`` of a trial: keep the best-validation weights, report every epoch.

    Tune gets ``val_<metric>`` (best so far), the test value of those weights, losses
    and costs after each epoch; the last epoch carries a checkpoint with the best weights.

    Args:
        payload: The trial data (test split, epochs).
        prepared: The trial's student and costs.
        progress: Updated with the epoch and metrics (the last result of a failure).
        state: The model's weights to keep (default: a copy of its state dict);
            a data-parallel trial passes one that gathers sharded weights.
        reports: False on the data-parallel workers other than rank 0, which run the
            same steps (FSDP needs every worker in each forward pass) but report nothing.
        extra: Added to every reported result.
    """

    def __init__(
        self,
        payload: TrialPayload,
        prepared: PreparedTrial,
        progress: dict[str, Any],
        *,
        state: Callable[[nn.Module], dict[str, torch.Tensor]] | None = None,
        reports: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.payload = payload
        self.prepared = prepared
        self.progress = progress
        self.state = state or (lambda model: copy.deepcopy(model.state_dict()))
        self.reports = reports
        self.extra = extra or {}
        self.metric = payload.metric
        self.best: dict[str, Any] = {"val": None, "test": float("nan"), "state": None}
        self.started = time.perf_counter()

    def __call__(self, report: EpochReport) -> bool:
        """Record ``report`` and send it to Tune; never asks training to stop."""
        model, best, prepared, metric = self.prepared.model, self.best, self.prepared, self.metric
        task = self.payload.task
        improved = (
            task.better(report.val_acc, best["val"])
            if task is not None and best["val"] is not None
            else best["val"] is None or report.val_acc > best["val"]
        )
        if improved:
            best["val"] = report.val_acc
            best["test"], _ = evaluate(model, self.payload.test_x, self.payload.test_y, task)
            best["state"] = self.state(model)
            model.train()
        metrics: dict[str, Any] = {
            "epoch": report.epoch,
            metric.val: best["val"],
            metric.epoch_val: report.val_acc,
            "val_loss": report.val_loss,
            metric.test: best["test"],
            "train_loss": report.train_loss,
            **prepared.costs,
            "params": prepared.n_params,
            "train_time_s": time.perf_counter() - self.started,
            "node_id": prepared.node_id,
            "device": prepared.device,
            **self.extra,
        }
        metrics.update({f"train_{k}": v for k, v in report.parts.items()})
        if report.worker_rows:
            metrics.update({f"train_rows_worker_{r}": n for r, n in enumerate(report.worker_rows)})
        self.progress.update(
            {"epoch": report.epoch, metric.val: best["val"], "last": dict(metrics)}
        )
        if not self.reports:
            return False
        if report.epoch == self.payload.epochs:
            with tempfile.TemporaryDirectory() as folder:
                torch.save(best["state"], Path(folder) / STATE_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)
        return False


def _run_trial(config: dict[str, Any], payload: TrialPayload, progress: dict[str, Any]) -> None:
    prepared = prepare_trial(config, payload, progress)
    if prepared is None:
        return
    train_prepared(payload, prepared, EpochReporter(payload, prepared, progress))


def train_prepared(
    payload: TrialPayload,
    prepared: PreparedTrial,
    on_epoch: Callable[[EpochReport], bool | None] | None,
    parallel: DataParallel | None = None,
) -> TrainResult:
    """Train a prepared trial's student with its loss, lr and seed (one process, or
    this process's share of a data-parallel trial)."""
    loss = payload.loss_cls(payload.loss_params, prepared.loss_hparams)
    return train_on_payload(
        payload,
        prepared.model,
        lr=prepared.lr,
        seed=prepared.seed,
        loss=loss,
        on_epoch=on_epoch,
        parallel=parallel,
    )


#: Cached teacher outputs of at most this many bytes (decoded) are copied into the trial's
#: memory before training: indexing a tensor costs less per batch than decoding rows of
#: the memory-mapped files (about 6% of a small student's training time, measured in
#: benchmarks/search_overhead.py's setting). Larger outputs stay shared through the
#: operating system's page cache, which is what the memory-mapped cache is for.
RESIDENT_TEACHER_BYTES = 64 * 2**20


def resident(rows: Any) -> Any:
    """``rows`` as an in-memory tensor when they are small dense cached rows; else as is."""
    if not isinstance(rows, CachedRows) or rows.spec.get("encoding") != "dense":
        return rows
    decoded = 4 * rows.shape.numel()  # float32 once decoded
    return rows.materialize() if decoded <= RESIDENT_TEACHER_BYTES else rows


def train_on_payload(
    payload: TrialPayload,
    model: nn.Module,
    *,
    lr: float,
    seed: int,
    loss: LossStrategy | None,
    on_epoch: Callable[[EpochReport], bool | None] | None = None,
    parallel: DataParallel | None = None,
) -> TrainResult:
    """Train ``model`` on the payload's data with its settings (epochs, batch, device).

    Args:
        payload: The search's shared trial data.
        model: The student.
        lr: The learning rate.
        seed: The training seed (batch order).
        loss: The distillation loss; None trains on the labels alone, without anything
            from the teacher (the from-scratch baseline).
        on_epoch: Called after every epoch.
        parallel: This process's place in a data-parallel trial, if it is one.
    """
    distill = loss is not None
    return train_model(
        model,
        x=payload.train_x,
        y=payload.train_y,
        val_x=payload.val_x,
        val_y=payload.val_y,
        settings=TrainSettings(
            epochs=payload.epochs,
            lr=lr,
            batch_size=payload.batch_size,
            weight_decay=payload.weight_decay,
            seed=seed,
            device=trial_device(payload.gpus),
            precision=payload.precision,
        ),
        loss=loss,
        teacher_logits=resident(payload.teacher_train_logits) if distill else None,
        on_epoch=on_epoch,
        teacher_features=(
            {k: resident(v) for k, v in (payload.teacher_train_features or {}).items()}
            if distill
            else None
        ),
        online_teacher=payload.online_teacher if distill else None,
        parallel=parallel,
        task=payload.task,
    )
