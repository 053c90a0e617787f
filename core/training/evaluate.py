"""Evaluating a model: logits, accuracy and loss on a split, and its parameter count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdforge.batching import iter_batches
from kdforge.data import Inputs

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


def evaluate(model: nn.Module, x: Inputs, y: torch.Tensor) -> tuple[float, float]:
    """Return ``(accuracy, cross-entropy)`` of ``model`` on a labeled split."""
    logits = predict_logits(model, x)
    y = y.to(logits.device)
    return accuracy(logits, y), float(F.cross_entropy(logits, y))
