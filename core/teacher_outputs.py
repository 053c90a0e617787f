"""The teacher's outputs on every split, computed once per search in the driver.

Trials never run the teacher: they receive these tensors through Ray's object store
(``tune.with_parameters``), stored once and read by every trial on a node.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdforge.data import DataSplits, Split
from kdforge.interfaces import Teacher
from kdforge.trainer import accuracy

__all__ = ["TeacherOutputs", "compute_teacher_outputs"]


@dataclass
class TeacherOutputs:
    """Teacher logits per split (``train`` includes transfer rows, appended last)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    forward_calls: int = 0

    def accuracy(self, splits: DataSplits) -> dict[str, float]:
        """Teacher accuracy on the labeled val and test splits."""
        return {
            "val": accuracy(self.val, splits.val.y),
            "test": accuracy(self.test, splits.test.y),
        }


def training_inputs(splits: DataSplits) -> Split:
    """Train rows followed by transfer rows (labels ``-1``), as the trainer sees them."""
    if splits.transfer is None:
        return splits.train
    return Split(
        torch.cat([splits.train.x, splits.transfer.x]),
        torch.cat([splits.train.y, splits.transfer.y]),
    )


def compute_teacher_outputs(
    teacher: Teacher, splits: DataSplits, batch_size: int = 512
) -> TeacherOutputs:
    """Run the teacher over train(+transfer), val and test in batches."""
    calls = 0

    def run(x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        outs = []
        for start in range(0, len(x), batch_size):
            output = teacher.predict(x[start : start + batch_size])
            calls += 1
            if output.logits is None:
                raise ValueError(f"teacher {teacher.name!r} returned no logits")
            outs.append(output.logits.detach().float().cpu())
        return torch.cat(outs) if outs else torch.empty(0)

    with torch.no_grad():
        train = run(training_inputs(splits).x)
        val = run(splits.val.x)
        test = run(splits.test.x)
    return TeacherOutputs(train=train, val=val, test=test, forward_calls=calls)
