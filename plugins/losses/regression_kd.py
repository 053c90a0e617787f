"""Loss ``regression_kd``: distillation for real-valued predictions (task ``regression``).

The student regresses on the labels and on the teacher's predictions at once::

    loss = (1 - alpha) * label_loss(s, y) + alpha * mean((s - t)^2)

``label_loss`` is the task's (MSE or Huber over the known target cells, on the
standardised targets); the teacher term is the squared error to the teacher's
predictions, averaged over rows and targets (the host standardises a teacher's
predictions like the targets, so both terms are in the same units). Rows whose labels
are NaN (transfer data) enter only the teacher term.

``teacher_bound: true`` turns the label term into the *teacher bounded regression
loss* of Chen, Choi, Yu, Han & Chandraker (2017), "Learning Efficient Object Detection
Models with Knowledge Distillation" (NIPS 2017)::

    L_b(R_s, R_t, y) = ||R_s - y||_2^2   if ||R_s - y||_2^2 + m > ||R_t - y||_2^2
                       0                  otherwise

per row: the teacher's predictions are not a target but an upper bound. The student is
pulled to the labels only while it is not better than the teacher by at least the
margin ``m`` (hyperparameter ``margin``, in squared standardised units summed over a
row's targets); once it is, the row adds nothing. A row that does not count gives 0
but still counts in the average over labeled cells, so the term shrinks as the student
overtakes the teacher instead of jumping. The squared error inside the term is the
task's label loss (MSE, or Huber when the task is configured so). The paper adds
``L_b`` to an ordinary smooth-L1 label loss; here it replaces the label term, and the
``alpha`` term still pulls toward the teacher (``alpha = 0`` gives the paper's bound
alone).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge.errors import PluginError
from kdforge.interfaces import HParam, LossResult, LossStrategy, ModelOutput, PluginParams


class RegressionKDParams(PluginParams):
    """Parameters of ``regression_kd``."""

    teacher_bound: bool = Field(
        False,
        description="Count a row's label term only while the student's squared error plus "
        "`margin` exceeds the teacher's (Chen et al. 2017's teacher bounded regression loss).",
    )


def labeled_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over the known (non-NaN) target cells; 0 when none is."""
    known = ~torch.isnan(targets)
    cells = F.mse_loss(outputs, torch.where(known, targets, outputs.detach()), reduction="none")
    return (cells * known).sum() / known.sum().clamp_min(1)


class RegressionKD(LossStrategy):
    """Label loss plus squared error to the teacher's predictions, mixed by alpha."""

    name = "regression_kd"
    Params = RegressionKDParams
    output_kinds = frozenset({"values"})
    hyperparameters: ClassVar[tuple[HParam, ...]] = (
        HParam("alpha", 0.0, 1.0, default=0.5, help="Weight of the teacher term."),
    )
    #: Declared only with ``teacher_bound: true``.
    margin_hparam: ClassVar[HParam] = HParam(
        "margin",
        0.0,
        1.0,
        default=0.0,
        help="m of the teacher bound: the student must beat the teacher's squared error by m "
        "for a row's label term to vanish.",
    )

    @classmethod
    def declared_hyperparameters(cls, params: PluginParams | None) -> tuple[HParam, ...]:
        """``alpha``, plus ``margin`` when the label term is teacher-bounded."""
        if isinstance(params, RegressionKDParams) and params.teacher_bound:
            return (*cls.hyperparameters, cls.margin_hparam)
        return cls.hyperparameters

    def label_loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task's label loss; without a task, MSE over the known target cells."""
        if self.task is None:
            return labeled_mse(outputs, labels)
        return super().label_loss(outputs, labels)

    def bounded_labels(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Labels whose rows beat the teacher's bound replaced by the student's own outputs.

        Those cells then give zero loss and zero gradient through :meth:`label_loss`, yet
        still count in its average (the paper's 0 for that row); NaN cells stay NaN.
        """
        known = ~torch.isnan(labels)
        filled = torch.where(known, labels, torch.zeros_like(labels))
        with torch.no_grad():
            err_s = ((student - filled) ** 2 * known).sum(dim=1)
            err_t = ((teacher - filled) ** 2 * known).sum(dim=1)
            counts = err_s + self.hparams["margin"] > err_t
        keep = counts.unsqueeze(1) | ~known
        return torch.where(keep, labels, student.detach())

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``(1-alpha)*label + alpha*mean((s-t)^2)`` and its two parts."""
        if student.logits is None or teacher.logits is None:
            raise PluginError("regression_kd needs outputs from both the student and the teacher")
        params = self.params
        assert isinstance(params, RegressionKDParams)
        s, t = student.logits, teacher.logits.to(student.logits.dtype)
        alpha = self.hparams["alpha"]
        if params.teacher_bound:
            label = self.label_loss(s, self.bounded_labels(s, t, labels))
        else:
            label = self.label_loss(s, labels)
        kd = F.mse_loss(s, t)
        total = (1.0 - alpha) * label + alpha * kd
        return LossResult(total, {"kd": float(kd.detach()), "label": float(label.detach())})


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``regression_kd`` loss."""
    register("regression_kd", RegressionKD)
