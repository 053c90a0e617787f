"""Loss ``logit_mse``: regression of the student's logits on the teacher's.

Ba & Caruana (2014), "Do Deep Nets Really Need to be Deep?", train the student by
L2 regression on the teacher's logits (before the softmax), so no information is
squashed by the softmax and there is no temperature to tune::

    loss = (1 - alpha) * CE(student, labels) + alpha * mean((s - t)^2)

The mean runs over rows and classes (the paper's ``1/2T * sum`` up to a constant
factor). ``alpha = 1`` is the paper's pure regression. Rows labeled ``-1`` enter only
the regression term.

Comparing raw outputs makes sense for every task, so ``CE`` is the task's label loss
(:meth:`~kdforge.interfaces.LossStrategy.label_loss`): cross-entropy for
classification, binary cross-entropy for multi-label outputs, MSE (or Huber) for
regression, where the whole loss is regression on labels and teacher predictions.
Per-position logits ``(n, T, K)`` (token tagging) are compared at the positions that
hold a word only (target ``!= -2``): the mean runs over those positions and the classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import kdforge
from kdforge.errors import PluginError
from kdforge.interfaces import HParam, LossResult, LossStrategy, ModelOutput
from kdforge.plugins.losses._positions import position_mean


class LogitMSE(LossStrategy):
    """Mean squared error between student and teacher logits, mixed with CE by alpha."""

    name = "logit_mse"
    # Raw outputs are compared before any softmax or sigmoid, so the same regression
    # fits per-class logits, per-label logits and real-valued predictions alike.
    output_kinds = frozenset({"class_logits", "label_logits", "values", "token_logits"})
    hyperparameters = (
        HParam("alpha", 0.0, 1.0, default=1.0, help="Weight of the logit regression term."),
    )

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``(1-alpha)*label_loss + alpha*MSE(outputs)`` and its two parts."""
        if student.logits is None or teacher.logits is None:
            raise PluginError("logit_mse needs logits from both the student and the teacher")
        alpha = self.hparams["alpha"]
        if student.logits.dim() == 3:
            squared = F.mse_loss(student.logits, teacher.logits, reduction="none").mean(-1)
            mse = position_mean(squared, labels)
        else:
            mse = F.mse_loss(student.logits, teacher.logits)
        ce = self.label_loss(student.logits, labels)
        total = (1.0 - alpha) * ce + alpha * mse
        return LossResult(total, {"mse": float(mse.detach()), "ce": float(ce.detach())})


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``logit_mse`` loss."""
    register("logit_mse", LogitMSE)
