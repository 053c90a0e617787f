"""Loss ``dkd``: decoupled knowledge distillation (target and non-target terms).

Zhao, Cui, Song, Qiu & Liang (2022), "Decoupled Knowledge Distillation": the KD
loss splits into TCKD, a binary KL on the probability of the target class vs the
rest, and NCKD, a KL between the distributions over the non-target classes only;
weighting them apart (alpha, beta) beats classical KD::

    b = [p_target, 1 - p_target]                (softmax at temperature T)
    TCKD = KL(b_teacher || b_student)
    NCKD = KL(softmax(t_nt / T) || softmax(s_nt / T))   (non-target logits only)
    loss = ce_weight * CE + T^2 * (alpha * TCKD + beta * NCKD)

KLs are averaged over rows. The non-target softmax drops the target column exactly
(the authors subtract 1000 from it, the same thing in practice). Unlabeled rows
(label ``-1``) take the teacher's top class as their target and skip the CE term.
The paper's linear warm-up of the DKD term is not applied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge.data import UNLABELED
from kdforge.errors import PluginError
from kdforge.interfaces import (
    CLASS_LOGITS_ONLY,
    HParam,
    LossResult,
    LossStrategy,
    ModelOutput,
    PluginParams,
)


class DKDParams(PluginParams):
    """Parameters of ``dkd``."""

    ce_weight: float = Field(1.0, ge=0, description="Weight of cross-entropy on labeled rows.")


def dkd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(TCKD, NCKD)``, each a row mean, not yet scaled by T^2.

    Args:
        student_logits: ``(n, C)``.
        teacher_logits: ``(n, C)``.
        target: Target class per row ``(n,)`` (no ``-1``).
        temperature: Softmax temperature T.
    """
    n, classes = student_logits.shape
    gt = F.one_hot(target, classes).bool()
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    # Binary distributions [p_target, p_rest]; log of the rest via logsumexp stays stable.
    log_b_s = torch.stack(
        [log_p_s[gt], torch.logsumexp(log_p_s.masked_fill(gt, float("-inf")), dim=1)], dim=1
    )
    log_b_t = torch.stack(
        [log_p_t[gt], torch.logsumexp(log_p_t.masked_fill(gt, float("-inf")), dim=1)], dim=1
    )
    tckd = F.kl_div(log_b_s, log_b_t, reduction="batchmean", log_target=True)
    s_nt = student_logits[~gt].reshape(n, classes - 1)
    t_nt = teacher_logits[~gt].reshape(n, classes - 1)
    nckd = F.kl_div(
        F.log_softmax(s_nt / temperature, dim=1),
        F.log_softmax(t_nt / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return tckd, nckd


class DKD(LossStrategy):
    """Decoupled KD: alpha * TCKD + beta * NCKD at temperature T, plus cross-entropy."""

    name = "dkd"
    output_kinds = CLASS_LOGITS_ONLY
    Params = DKDParams
    hyperparameters = (
        HParam("alpha", 0.1, 10.0, log=True, default=1.0, help="Weight of TCKD."),
        HParam("beta", 0.5, 16.0, log=True, default=8.0, help="Weight of NCKD."),
        HParam("temperature", 1.0, 10.0, log=True, default=4.0, help="Softmax temperature T."),
    )

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``ce_weight*CE + T^2*(alpha*TCKD + beta*NCKD)`` and its parts."""
        if student.logits is None or teacher.logits is None:
            raise PluginError("dkd needs logits from both the student and the teacher")
        params = self.params
        assert isinstance(params, DKDParams)
        t = self.hparams["temperature"]
        target = torch.where(labels == UNLABELED, teacher.logits.argmax(dim=1), labels)
        tckd, nckd = dkd_terms(student.logits, teacher.logits, target, t)
        kd = t**2 * (self.hparams["alpha"] * tckd + self.hparams["beta"] * nckd)
        parts = {"tckd": float(tckd.detach()), "nckd": float(nckd.detach())}
        if params.ce_weight == 0:
            return LossResult(kd, parts)
        ce = self.label_loss(student.logits, labels)
        parts["ce"] = float(ce.detach())
        return LossResult(kd + params.ce_weight * ce, parts)


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``dkd`` loss."""
    register("dkd", DKD)
