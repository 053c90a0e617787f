"""Task ``classification``: one class per example, logits scored by accuracy (the default).

Targets are int64 class ids ``(n,)``; ``-1`` marks an example without a label (rows of
a transfer split). The label loss is cross-entropy, the teacher's soft target its
softmax at temperature T (Hinton et al., 2015), and selection uses accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import kdforge
from kdforge.data import UNLABELED, DataInfo, DataSplits
from kdforge.errors import DataError
from kdforge.interfaces import Task
from kdforge.plugins.tasks._metrics import macro_f1


class Classification(Task):
    """One label per example: K logits, cross-entropy, accuracy (the default task)."""

    name = "classification"
    output_kind = "class_logits"
    metric = "acc"
    higher_is_better = True
    metric_names = ("acc", "macro_f1")

    def num_outputs(self, info: DataInfo) -> int:
        """The number of classes."""
        return info.num_classes

    def check(self, splits: DataSplits) -> None:
        """Targets must be int64 class ids in ``[0, K)`` or ``-1``, one per row."""
        k = splits.info.num_classes
        for name, split in splits.named_splits().items():
            y = split.y
            if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
                raise DataError(
                    f"task classification: the {name} split's targets are {y.dtype} of shape "
                    f"{tuple(y.shape)}, not one integer class id per row",
                    hint="use task: regression for real-valued targets, task: multilabel "
                    "for several 0/1 labels per row",
                )
            if y.dtype != torch.int64:
                # Cross-entropy takes int64 class ids only; refusing here beats a
                # dtype error deep inside the first trial.
                raise DataError(
                    f"task classification: the {name} split's class ids are {y.dtype}, not int64",
                    hint="convert the targets with y.long() in the dataset plugin",
                )
            if len(y) and (int(y.min()) < UNLABELED or int(y.max()) >= k):
                raise DataError(
                    f"task classification: the {name} split has class ids from {int(y.min())} "
                    f"to {int(y.max())}, outside 0..{k - 1} (and -1 for no label)"
                )

    def labeled(self, targets: torch.Tensor) -> torch.Tensor:
        """Rows whose class id is not ``-1``."""
        return targets != UNLABELED

    def label_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the labeled rows (0 for a batch of transfer rows only)."""
        # ignore_index plus an explicit count instead of masking rows: no host sync,
        # and a batch without labels gives 0, not NaN.
        total = F.cross_entropy(outputs, targets, ignore_index=UNLABELED, reduction="sum")
        return total / (targets != UNLABELED).sum().clamp_min(1)

    def soft_target(self, outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Softmax of the logits at ``temperature``."""
        return torch.softmax(outputs / temperature, dim=-1)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Accuracy and macro-F1 over the labeled rows."""
        keep = self.labeled(targets)
        outputs, targets = outputs[keep], targets[keep].to(outputs.device)
        if len(targets) == 0:
            return {"acc": float("nan"), "macro_f1": float("nan")}
        predicted = outputs.argmax(dim=-1)
        k = outputs.shape[-1]
        one_hot = torch.eye(k, dtype=torch.bool, device=outputs.device)
        guessed, truth = one_hot[predicted], one_hot[targets]
        # Classes neither present nor predicted are left out of the mean (scikit-learn's
        # rule): a small validation split would otherwise score each absent class 1.
        seen = guessed.any(0) | truth.any(0)
        return {
            "acc": float((predicted == targets).float().mean()),
            "macro_f1": macro_f1(guessed[:, seen], truth[:, seen]),
        }


@kdforge.hookimpl
def register_tasks(register: kdforge.Register) -> None:
    """Register the ``classification`` task."""
    register("classification", Classification)
