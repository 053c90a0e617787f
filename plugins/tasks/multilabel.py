"""Task ``multilabel``: several independent 0/1 labels per example.

Targets are float32 ``(n, L)`` with 0 or 1 per label and NaN where a label is unknown
(a row of NaN: an unlabeled example). The model gives one logit per label; the label
loss is binary cross-entropy over the known cells, the teacher's soft target is the
sigmoid of its logits at temperature T, and selection uses mean average precision
(mAP), which needs no threshold. Macro- and micro-F1 at 0.5 are reported beside it.
The exported and served model returns the per-label logits, as a teacher of this task
gives them: a label is present where its logit is above 0 (its sigmoid above 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import kdforge
from kdforge.data import DataInfo, DataSplits
from kdforge.interfaces import Task
from kdforge.plugins.tasks._metrics import average_precision, macro_f1
from kdforge.plugins.tasks._real_targets import check_float_rows, labeled_cells


class Multilabel(Task):
    """Several 0/1 labels per example: L sigmoid logits, BCE, mean average precision."""

    name = "multilabel"
    output_kind = "label_logits"
    metric = "map"
    higher_is_better = True
    metric_names = ("map", "macro_f1", "micro_f1")
    default_loss = "multilabel_kd"

    def num_outputs(self, info: DataInfo) -> int:
        """The number of labels."""
        return info.num_classes

    def check(self, splits: DataSplits) -> None:
        """Targets must be float ``(n, L)`` rows of 0, 1 or NaN."""
        check_float_rows(self.name, splits, splits.info.num_classes, binary=True)

    def labeled(self, targets: torch.Tensor) -> torch.Tensor:
        """Rows with at least one known label."""
        return labeled_cells(targets).any(dim=1)

    def label_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy with logits, averaged over the known label cells."""
        known = labeled_cells(targets)
        cells = F.binary_cross_entropy_with_logits(
            outputs, torch.nan_to_num(targets), reduction="none"
        )
        return (cells * known).sum() / known.sum().clamp_min(1)

    def soft_target(self, outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Per-label sigmoid probabilities at ``temperature``."""
        return torch.sigmoid(outputs / temperature)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """mAP, macro-F1 and micro-F1 (threshold 0.5), each label over its known cells."""
        targets = targets.to(outputs.device)
        known = labeled_cells(targets)
        precisions, f1s = [], []
        for column in range(targets.shape[1]):
            rows = known[:, column]
            if not bool(rows.any()):
                continue
            scores = outputs[rows, column].float().unsqueeze(1)
            truth = targets[rows, column].unsqueeze(1) > 0.5
            value = average_precision(scores, truth)
            if value == value:  # a label without a positive has no precision-recall curve
                precisions.append(value)
            f1s.append(macro_f1(scores > 0, truth))
        if not f1s:
            return dict.fromkeys(self.metric_names, float("nan"))
        truth_cells = targets[known] > 0.5
        predicted_cells = outputs[known] > 0  # sigmoid > 0.5
        return {
            "map": sum(precisions) / len(precisions) if precisions else float("nan"),
            "macro_f1": sum(f1s) / len(f1s),
            "micro_f1": macro_f1(predicted_cells.reshape(-1, 1), truth_cells.reshape(-1, 1)),
        }


@kdforge.hookimpl
def register_tasks(register: kdforge.Register) -> None:
    """Register the ``multilabel`` task."""
    register("multilabel", Multilabel)
