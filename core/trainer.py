"""Training and evaluation of one student on in-memory tensors.

Batches are drawn by indexing tensors with a seeded permutation (no DataLoader: on
small in-memory data that is several times faster on CPU). AdamW with a cosine
learning-rate schedule over the full epoch budget; the weights of the best
validation epoch are kept. A non-finite loss stops training with
:class:`TrainingDiverged`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kdforge.data import UNLABELED
from kdforge.interfaces import LossStrategy, ModelOutput

__all__ = [
    "EpochReport",
    "TrainResult",
    "TrainSettings",
    "TrainingDiverged",
    "accuracy",
    "evaluate",
    "predict_logits",
    "train_model",
]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training run."""

    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"


@dataclass
class EpochReport:
    """Metrics after one epoch."""

    epoch: int
    train_loss: float
    val_acc: float
    val_loss: float
    parts: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`; the model holds the best-validation weights."""

    best_val_acc: float
    best_epoch: int
    epochs_run: int
    history: list[EpochReport]


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched, on ``x``'s device."""
    was_training = model.training
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            outs.append(model(x[start : start + batch_size]))
    model.train(was_training)
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose arg-max matches the label."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(dim=-1) == labels).float().mean())


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Return ``(accuracy, cross-entropy)`` of ``model`` on a labeled split."""
    logits = predict_logits(model, x)
    return accuracy(logits, y), float(F.cross_entropy(logits, y))


def train_model(
    model: nn.Module,
    *,
    x: torch.Tensor,
    y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    settings: TrainSettings,
    loss: LossStrategy | None = None,
    teacher_logits: torch.Tensor | None = None,
    on_epoch: Callable[[EpochReport], bool | None] | None = None,
) -> TrainResult:
    """Train ``model`` in place and load its best-validation weights.

    Args:
        model: The student (or teacher being trained).
        x: Training inputs (may include unlabeled transfer rows).
        y: Training labels, ``-1`` for unlabeled rows.
        val_x: Validation inputs.
        val_y: Validation labels.
        settings: Epochs, learning rate, batch size, seed, device.
        loss: Distillation loss; None trains on the labels alone (cross-entropy).
        teacher_logits: Teacher logits aligned with ``x``; required with ``loss``.
        on_epoch: Called after every epoch; returning True stops training.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
    """
    device = torch.device(settings.device)
    if loss is None:
        keep = y != UNLABELED
        x, y = x[keep], y[keep]
    elif teacher_logits is None:
        raise ValueError("a distillation loss needs teacher_logits aligned with x")
    x, y = x.to(device), y.to(device)
    val_x, val_y = val_x.to(device), val_y.to(device)
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(device)
    model.to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    steps_per_epoch = max(1, math.ceil(len(x) / settings.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.epochs * steps_per_epoch
    )
    best_acc, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    history: list[EpochReport] = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(device)
        total, parts_sum, seen = 0.0, {}, 0
        for start in range(0, len(x), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            logits = model(x[idx])
            if loss is None:
                value = F.cross_entropy(logits, y[idx])
                parts = {"ce": float(value.detach())}
            else:
                assert teacher_logits is not None
                result = loss(ModelOutput(logits), ModelOutput(teacher_logits[idx]), y[idx])
                value, parts = result.total, result.parts
            if not torch.isfinite(value):
                raise TrainingDiverged(
                    f"training loss became {float(value)} at epoch {epoch} "
                    f"(lr={settings.lr:.3g}); lower the learning-rate range"
                )
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            scheduler.step()
            n = len(idx)
            total += float(value.detach()) * n
            for name, part in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + part * n
            seen += n
        val_acc, val_loss = evaluate(model, val_x, val_y)
        report = EpochReport(
            epoch=epoch,
            train_loss=total / max(seen, 1),
            val_acc=val_acc,
            val_loss=val_loss,
            parts={k: v / max(seen, 1) for k, v in parts_sum.items()},
            lr=float(scheduler.get_last_lr()[0]),
        )
        history.append(report)
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None and on_epoch(report):
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_acc, best_epoch, len(history), history)
