"""Evaluating a model: its outputs, its task's metric and label loss on a split, its size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdforge.batching import iter_batches
from kdforge.data import Inputs, VocabularyTrim
from kdforge.interfaces import Task

__all__ = ["accuracy", "count_parameters", "evaluate", "model_device", "predict_logits"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (trainable and frozen)."""
    return sum(p.numel() for p in model.parameters())


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without any)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def predict_logits(model: nn.Module, x: Inputs, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched, on ``x``'s device.

    Lazy (streamed) inputs are read batch by batch and moved to the model's device.
    """
    was_training = model.training
    model.eval()
    outs = []
    device = model_device(model)
    with torch.no_grad():
        for _, batch in iter_batches(x, batch_size):
            # .to() is a no-op when the batch already is on the model's device.
            outs.append(model(batch.to(device)))
    model.train(was_training)
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose arg-max matches the label."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(dim=-1) == labels.to(logits.device)).float().mean())


def evaluate(
    model: nn.Module, x: Inputs, y: torch.Tensor, task: Task | None = None
) -> tuple[float, float]:
    """Return ``(metric, label loss)`` of ``model`` on a split.

    Args:
        model: The model.
        x: The split's inputs.
        y: Its targets in the task's form.
        task: The task whose selection metric and label loss are measured; None is
            classification: ``(accuracy, cross-entropy)`` over every row.

    A student with a trimmed vocabulary (:class:`~kdforge.data.VocabularyTrim`) is
    scored over its kept tokens: the targets are mapped to its entries first.
    """
    logits = predict_logits(model, x)
    y = y.to(logits.device)
    trim = VocabularyTrim.of(model)
    if trim is not None:  # a trimmed LM student scores its own entries (kdforge.data)
        y = trim.targets(y)
    if task is None:
        return accuracy(logits, y), float(F.cross_entropy(logits, y))
    with torch.no_grad():
        loss = float(task.label_loss(logits, y))
    return task.metrics(logits, y)[task.metric], loss
