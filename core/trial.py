"""One Ray Tune trial: build the sampled student, distill it, report every epoch.

This module runs inside Ray workers; it must stay cheap to import and never touch
the teacher (its outputs arrive precomputed in :class:`TrialPayload`).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdforge.data import DataInfo
from kdforge.interfaces import LossStrategy, PluginParams, SearchSpace
from kdforge.trainer import EpochReport, TrainSettings, evaluate, train_model

__all__ = ["TrialPayload", "count_parameters", "run_trial", "split_config"]

STATE_FILE = "student.pt"


@dataclass
class TrialPayload:
    """Everything a trial needs, stored once in Ray's object store."""

    info: DataInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    teacher_train_logits: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    space: SearchSpace
    loss_cls: type[LossStrategy]
    loss_params: PluginParams
    epochs: int
    batch_size: int
    weight_decay: float
    seed: int
    threads: int


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable and frozen parameters of a model."""
    return sum(p.numel() for p in model.parameters())


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], float]:
    """Split a sampled trial config into ``(arch, loss hparams, lr)``."""
    arch = dict(config.get("student", {}))
    loss_hparams = {k: float(v) for k, v in dict(config.get("loss", {})).items()}
    return arch, loss_hparams, float(config["lr"])


def trial_seed(base_seed: int, trial_id: str) -> int:
    """A per-trial seed derived from the search seed and the trial id (stable)."""
    digest = sum((i + 1) * ord(c) for i, c in enumerate(trial_id))
    return (base_seed * 1_000_003 + digest) % (2**31 - 1)


def run_trial(config: dict[str, Any], payload: TrialPayload) -> None:
    """Ray Tune function trainable: distill one sampled student.

    Reports ``val_acc`` (best so far, the metric the scheduler and sampler use),
    ``epoch_val_acc``, ``test_acc`` (of the best-validation weights), losses,
    ``params`` and ``epoch`` after each epoch; the last epoch carries a checkpoint
    with the best-validation weights.
    """
    from ray import tune

    torch.set_num_threads(max(1, payload.threads))
    import ray

    context = tune.get_context()
    trial_id = context.get_trial_id() or "local"
    node_id = ray.get_runtime_context().get_node_id()
    seed = trial_seed(payload.seed, trial_id)
    torch.manual_seed(seed)
    arch, loss_hparams, lr = split_config(config)
    model = payload.space.build(arch, payload.info)
    n_params = count_parameters(model)
    loss = payload.loss_cls(payload.loss_params, loss_hparams)
    best = {"val_acc": -1.0, "test_acc": float("nan"), "state": None}
    started = time.perf_counter()

    def on_epoch(report: EpochReport) -> bool:
        if report.val_acc > best["val_acc"]:
            best["val_acc"] = report.val_acc
            best["test_acc"], _ = evaluate(model, payload.test_x, payload.test_y)
            best["state"] = copy.deepcopy(model.state_dict())
            model.train()
        metrics: dict[str, Any] = {
            "epoch": report.epoch,
            "val_acc": best["val_acc"],
            "epoch_val_acc": report.val_acc,
            "val_loss": report.val_loss,
            "test_acc": best["test_acc"],
            "train_loss": report.train_loss,
            "params": n_params,
            "train_time_s": time.perf_counter() - started,
            "node_id": node_id,
        }
        metrics.update({f"train_{k}": v for k, v in report.parts.items()})
        if report.epoch == payload.epochs:
            with tempfile.TemporaryDirectory() as folder:
                torch.save(best["state"], Path(folder) / STATE_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)
        return False

    settings = TrainSettings(
        epochs=payload.epochs,
        lr=lr,
        batch_size=payload.batch_size,
        weight_decay=payload.weight_decay,
        seed=seed,
    )
    train_model(
        model,
        x=payload.train_x,
        y=payload.train_y,
        val_x=payload.val_x,
        val_y=payload.val_y,
        settings=settings,
        loss=loss,
        teacher_logits=payload.teacher_train_logits,
        on_epoch=on_epoch,
    )


def is_finite(value: Any) -> bool:
    """True for a finite number."""
    return isinstance(value, int | float) and math.isfinite(float(value))
