"""Loss ``hinton_kd``: soft targets at temperature T mixed with the hard labels.

Hinton, Vinyals & Dean (2015)::

    loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))

The ``T^2`` factor keeps the soft term's gradients on the same scale as the hard
term's when T changes (they shrink as ``1/T^2``). Rows labeled ``-1`` (transfer data)
enter only the soft term. The hard term is the task's label loss
(:meth:`~kdforge.interfaces.LossStrategy.label_loss`; cross-entropy for classification).

Per-position logits ``(n, T, K)`` (task ``token_classification``): the KL is taken at
every position that holds a word (target ``!= -2``; tagged, or ``-1`` in transfer
rows) and averaged over them; padding, special tokens and later sub-tokens never
count. The hard term is cross-entropy over the tagged positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import kdforge
from kdforge.data import UNLABELED
from kdforge.errors import PluginError
from kdforge.interfaces import HParam, LossResult, LossStrategy, ModelOutput
from kdforge.plugins.losses._positions import position_mean


def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher/T) || softmax(student/T)), not scaled by T^2."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def position_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Mean over word positions of the per-position KL of ``(n, T, K)`` logits (no T^2)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(-1)
    return position_mean(kl, labels)


def labeled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labeled rows only (zero when none is labeled)."""
    # ignore_index plus an explicit count instead of masking the rows: no host sync
    # and no gather per batch, and a batch of transfer rows only gives 0, not NaN.
    total = F.cross_entropy(logits, labels, ignore_index=UNLABELED, reduction="sum")
    return total / (labels != UNLABELED).sum().clamp_min(1)


class HintonKD(LossStrategy):
    """Soft targets at temperature T (T^2-scaled KL) mixed with cross-entropy by alpha."""

    name = "hinton_kd"
    output_kinds = frozenset({"class_logits", "token_logits"})
    hyperparameters = (
        HParam("temperature", 1.0, 20.0, log=True, default=4.0, help="Softmax temperature T."),
        HParam("alpha", 0.0, 1.0, default=0.5, help="Weight of the soft (teacher) term."),
    )

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``(1-alpha)*CE + alpha*T^2*KL`` and its two parts."""
        if student.logits is None or teacher.logits is None:
            raise PluginError("hinton_kd needs logits from both the student and the teacher")
        temperature = self.hparams["temperature"]
        alpha = self.hparams["alpha"]
        if student.logits.dim() == 3:
            kd = position_kl(student.logits, teacher.logits, labels, temperature)
        else:
            kd = soft_target_kl(student.logits, teacher.logits, temperature)
        kd = kd * temperature**2
        ce = self.label_loss(student.logits, labels)
        total = (1.0 - alpha) * ce + alpha * kd
        return LossResult(total, {"kd": float(kd.detach()), "ce": float(ce.detach())})


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``hinton_kd`` loss."""
    register("hinton_kd", HintonKD)
