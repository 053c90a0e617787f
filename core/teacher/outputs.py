"""The teacher's outputs on every split, computed once per search in the driver.

Trials never run the teacher: they receive these tensors through Ray's object store
(``tune.with_parameters``), stored once and read by every trial on a node. Teacher
features (for feature-based losses) are computed on the training rows only, and only
when the loss needs them (:class:`~kdforge.interfaces.LossNeeds`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import torch

from kdforge import progress
from kdforge.batching import concat, iter_batches
from kdforge.data import DataSplits, Inputs, Split, TopKLogits
from kdforge.errors import PluginError
from kdforge.interfaces import LossNeeds, Task, Teacher
from kdforge.teacher.cached_rows import CachedRows
from kdforge.training.evaluate import accuracy

__all__ = ["TeacherOutputs", "compute_teacher_outputs"]


@dataclass
class TeacherOutputs:
    """Teacher logits per split (``train`` includes transfer rows, appended last).

    ``train_features`` holds named features of the training rows (shallow first)
    when the loss needs them. A teacher without logits (embeddings only) has
    ``has_logits=False`` and zero-width logit tensors.
    """

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    forward_calls: int = 0
    train_features: dict[str, torch.Tensor] = field(default_factory=dict)
    has_logits: bool = True
    # Set by kdforge.teacher.cache: a kdforge.teacher.online.OnlineTeacher when training
    # inputs are augmented (trials run the teacher per batch; ``train`` is then empty),
    # and per-member accuracies of an ensemble ({"val": {...}, "test": {...}}).
    online_teacher: Any = None
    teacher_report: dict[str, dict[str, float]] = field(default_factory=dict)

    def accuracy(self, splits: DataSplits, task: Task | None = None) -> dict[str, float]:
        """Teacher accuracy (the task's metric) on the val and test splits (NaN without
        logits)."""
        if not self.has_logits:
            return {"val": float("nan"), "test": float("nan")}
        if task is not None:
            return {
                "val": task.metrics(self.val, splits.val.y)[task.metric],
                "test": task.metrics(self.test, splits.test.y)[task.metric],
            }
        return {
            "val": accuracy(self.val, splits.val.y),
            "test": accuracy(self.test, splits.test.y),
        }

    def in_task_units(self, task: Task) -> TeacherOutputs:
        """These outputs as the task's student trains on them (``Task.prepare_outputs``:
        a regression teacher's predictions standardised like the targets)."""
        if not self.has_logits or type(task).prepare_outputs is Task.prepare_outputs:
            return self  # nothing to change: cached rows stay memory-mapped

        def prepared(rows: Any) -> torch.Tensor:
            # Outputs a task rescales are one small row per example (regression targets).
            dense = rows.materialize() if isinstance(rows, CachedRows) else rows
            return task.prepare_outputs(dense) if len(dense) else dense

        return replace(
            self, train=prepared(self.train), val=prepared(self.val), test=prepared(self.test)
        )


def training_inputs(splits: DataSplits) -> Split:
    """Train rows followed by transfer rows (labels ``-1``), as the trainer sees them."""
    if splits.transfer is None:
        return splits.train
    teacher_x = None
    if splits.train.teacher_x is not None:  # the teacher's own view, in the same order
        teacher_x = concat([splits.train.teacher_inputs, splits.transfer.teacher_inputs])
    return Split(
        concat([splits.train.x, splits.transfer.x]),
        torch.cat([splits.train.y, splits.transfer.y]),
        teacher_x,
    )


def compute_teacher_outputs(
    teacher: Teacher,
    splits: DataSplits,
    batch_size: int = 512,
    *,
    needs: LossNeeds | None = None,
    emit: Callable[[str], None] | None = None,
    top_k: int | None = None,
) -> TeacherOutputs:
    """Run the teacher over train(+transfer), val and test in batches.

    Args:
        teacher: The loaded teacher.
        splits: The data (the teacher reads ``Split.teacher_x`` where it is set).
        batch_size: Rows per teacher call.
        needs: What the loss reads; with ``features`` the training rows' features are
            kept too (``teacher_layers`` of them, or every one the teacher exposes).
            Default: logits only.
        emit: Where progress lines go (:mod:`kdforge.progress`).
        top_k: Keep per-position logits ``(n, T, V)`` as their k largest per position
            plus the log-sum-exp (:class:`~kdforge.data.TopKLogits`), batch by batch, so
            the dense logits of a whole split are never held (the per-position top-k
            cache). ``(n, classes)`` logits stay dense.
    """
    needs = needs or LossNeeds()
    splits = splits.for_teacher()  # the teacher reads its own view when it has one
    calls = 0
    has_logits = True
    features: dict[str, list[torch.Tensor]] = {}

    def run(x: Inputs, with_features: bool = False) -> torch.Tensor:
        nonlocal calls, has_logits
        outs: list[Any] = []
        # Streamed inputs are read by DataLoader workers, never augmented here.
        for _, batch in iter_batches(x, batch_size):
            if with_features:
                output = teacher.predict_features(batch, needs.teacher_layers)
                for name, value in output.features.items():
                    features.setdefault(name, []).append(value.detach().float().cpu())
            else:
                output = teacher.predict(batch)
            calls += 1
            bar.advance()
            if output.logits is None:
                if needs.logits:
                    raise PluginError(
                        f"teacher {teacher.name!r} returned no logits, but the loss reads them",
                        hint="use a loss that reads features only, or a teacher with logits",
                    )
                has_logits = False
                outs.append(torch.empty(len(batch), 0))
            elif top_k is not None and output.logits.dim() == 3:
                # Selected where the teacher ran (a GPU's topk is cheap), then k per position
                # cross to the host instead of V.
                outs.append(TopKLogits.from_logits(output.logits.detach(), top_k).to("cpu"))
            else:
                outs.append(output.logits.detach().float().cpu())
        if outs and isinstance(outs[0], TopKLogits):
            # Stands in for the tensor: the cache writes it as its topk_lse encoding.
            return cast(torch.Tensor, TopKLogits.cat(outs))
        return torch.cat(outs) if outs else torch.empty(0)

    train_x = training_inputs(splits).x
    batches = sum(math.ceil(len(x) / batch_size) for x in (train_x, splits.val.x, splits.test.x))
    with (
        torch.no_grad(),
        progress.phase("teacher outputs", total=batches, unit="batches", emit=emit) as bar,
    ):
        train = run(train_x, with_features=needs.features)
        val = run(splits.val.x)
        test = run(splits.test.x)
    return TeacherOutputs(
        train=train,
        val=val,
        test=test,
        forward_calls=calls,
        train_features={name: torch.cat(parts) for name, parts in features.items()},
        has_logits=has_logits,
    )
