"""Task ``multilabel``: several independent 0/1 labels per example.

Targets are float32 ``(n, L)`` with 0 or 1 per label and NaN where a label is unknown
(a row of NaN: an unlabeled example). The model gives one logit per label; the label
loss is binary cross-entropy over the known cells, the teacher's soft target is the
sigmoid of its logits at temperature T, and selection uses mean average precision
(mAP), which needs no threshold. Macro- and micro-F1 at 0.5 are reported beside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
        """mAP, macro-F1 and micro-F1 (threshold 0.5) over fully labeled rows."""
        targets = targets.to(outputs.device)
        keep = labeled_cells(targets).all(dim=1)
        outputs, targets = outputs[keep].float(), targets[keep]
        if len(targets) == 0:
            return dict.fromkeys(self.metric_names, float("nan"))
        truth = targets > 0.5
        predicted = outputs > 0  # sigmoid > 0.5
        return {
            "map": average_precision(outputs, truth),
            "macro_f1": macro_f1(predicted, truth),
            "micro_f1": macro_f1(predicted.reshape(-1, 1), truth.reshape(-1, 1)),
        }

    def output_head(self) -> nn.Module:
        """A sigmoid: the served model returns one probability per label."""
        return nn.Sigmoid()


@kdforge.hookimpl
def register_tasks(register: kdforge.Register) -> None:
    """Register the ``multilabel`` task."""
    register("multilabel", Multilabel)
