"""What the per-position tasks share: the targets' form, the rows and positions that
count, the scored cross-entropy and the per-position soft target."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdforge.data import NOT_A_WORD, UNLABELED, DataSplits
from kdforge.errors import DataError
from kdforge.interfaces import Task

__all__ = ["PositionTask", "check_position_targets", "scored_cross_entropy"]


def check_position_targets(task: str, splits: DataSplits, what: str, hint: str) -> None:
    """Every split's targets are int64 ``(n, seq_len)``, one per input position, with
    values in ``[0, num_classes)``, ``-1`` or ``-2``.

    Args:
        task: The task's name, for messages.
        splits: The data.
        what: What a target is, plural (``tags``, ``targets``), for messages.
        hint: How the dataset should give them.

    Raises:
        DataError: naming the task, the split and what is wrong.
    """
    k = splits.info.num_classes
    shape = tuple(splits.info.input_shape)
    for name, split in splits.named_splits().items():
        y = split.y
        if y.ndim != 2 or y.dtype != torch.int64:
            raise DataError(
                f"task {task}: the {name} split's targets are {y.dtype} of shape "
                f"{tuple(y.shape)}, not int64 (rows, seq_len) {what} per position",
                hint=hint,
            )
        if len(shape) == 1 and y.shape[1] != shape[0]:
            raise DataError(
                f"task {task}: the {name} split has {y.shape[1]} {what} per row but "
                f"{shape[0]} token positions per input"
            )
        if y.numel() and (int(y.min()) < NOT_A_WORD or int(y.max()) >= k):
            raise DataError(
                f"task {task}: the {name} split has {what} from {int(y.min())} to "
                f"{int(y.max())}, outside 0..{k - 1} (and -1: only distilled, -2: neither)"
            )


def scored_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the scored positions (targets >= 0); 0 when none is."""
    flat = targets.reshape(-1).clamp_min(UNLABELED)  # -2 and -1 alike: not scored
    total = F.cross_entropy(
        outputs.reshape(-1, outputs.shape[-1]), flat, ignore_index=UNLABELED, reduction="sum"
    )
    return total / (flat != UNLABELED).sum().clamp_min(1)


class PositionTask(Task):
    """Base of the tasks with one row of logits per input position ``(n, T, K)``.

    Targets are int64 ``(n, T)``: a class id where a position is scored, ``-1`` where it
    is only distilled, ``-2`` where it is neither (:data:`~kdforge.data.NOT_A_WORD`).
    """

    output_kind = "token_logits"

    def labeled(self, targets: torch.Tensor) -> torch.Tensor:
        """Rows with at least one scored position."""
        return (targets >= 0).any(dim=1)

    def label_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the scored positions (0 when none is)."""
        return scored_cross_entropy(outputs, targets)

    def soft_target(self, outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The softmax over the classes at every position, at ``temperature``."""
        return torch.softmax(outputs / temperature, dim=-1)
