"""Loss ``lm_kd``: token-level distillation of a language model, divergence chosen.

For every real position of a ``token_logits`` output ``(n, T, V)`` the teacher's
next-token (or masked-token) distribution ``p`` is compared with the student's ``q``,
both at temperature ``T``, by one of three divergences (``params.divergence``):

* ``forward_kl``: ``KL(p || q) = sum_v p_v (log p_v - log q_v)`` (mean-seeking; Hinton's
  soft targets per token, as DistilBERT);
* ``reverse_kl``: ``KL(q || p)`` (mode-seeking, as MiniLLM);
* ``gjsd``: the generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024, "On-Policy
  Distillation of Language Models"), with ``p`` the teacher and ``q`` the student::

      m        = beta * p + (1 - beta) * q
      JSD_beta = beta * KL(p || m) + (1 - beta) * KL(q || m)

  ``beta`` is searched. JSD_beta vanishes identically at ``beta = 0`` and ``1``; there
  (as the GKD authors' reference implementation in TRL does) the edges are its
  normalised limits: ``JSD_beta / beta -> KL(p || q)`` as ``beta -> 0`` (forward KL)
  and ``JSD_beta / (1 - beta) -> KL(q || p)`` as ``beta -> 1`` (reverse KL).

The divergence is multiplied by ``T^2`` (as Hinton: gradients keep their scale when T
changes) and averaged over the positions whose target is not ``-2``
(:data:`~kdforge.data.NOT_A_WORD`: padding, and the unmasked positions of a masked LM);
``-1`` positions (distilled, not scored) count. It is mixed with the task's label loss
(cross-entropy over the scored positions) by ``alpha``::

    loss = (1 - alpha) * label_loss + alpha * T^2 * mean_positions D(p_T, q_T)

**Top-k teacher outputs.** From a ``teacher_cache.top_k`` cache the teacher arrives as
:class:`~kdforge.data.TopKLogits` (the k largest logits per position plus the
log-sum-exp over the whole vocabulary) and is never densified. The divergence is then
taken over ``k + 1`` buckets: the k kept tokens and one *rest* bucket holding every
other token. The student's buckets are exact (its log-softmax gathered at the k ids;
its rest is the log-sum-exp of its other probabilities). The teacher's kept
probabilities are exact at T = 1 (``exp(v - lse)``) and its rest bucket holds exactly
``1 - sum`` of them; at another temperature the rest is taken as spread evenly over
the ``V - k`` other tokens (the only unknown). Merging tokens can only lower a
divergence, so a top-k loss is a close lower bound of the full one, and it is exact
when ``k = V`` (no rest bucket).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge.data import TopKLogits
from kdforge.errors import PluginError
from kdforge.interfaces import HParam, LossResult, LossStrategy, ModelOutput, PluginParams
from kdforge.plugins.losses._positions import position_mean

__all__ = [
    "LMKD",
    "Divergence",
    "LMKDParams",
    "bucket_log_probs",
    "position_divergence",
]

Divergence = Literal["forward_kl", "reverse_kl", "gjsd"]

#: Floor of teacher log-probabilities: a token the teacher rules out (-inf, or a rest
#: bucket with no mass) gives a large, finite reverse-KL / JSD term instead of inf.
_LOG_FLOOR = -1.0e4


class LMKDParams(PluginParams):
    """Parameters of ``lm_kd``."""

    divergence: Divergence = Field(
        "forward_kl",
        description="forward_kl: KL(teacher || student); reverse_kl: KL(student || teacher); "
        "gjsd: GKD's generalised Jensen-Shannon divergence with a searched beta "
        "(beta=0: forward KL, beta=1: reverse KL).",
    )


def _teacher_top_k_log_probs(teacher: TopKLogits, temperature: float) -> torch.Tensor:
    """Teacher log-probabilities on the k kept tokens (+ the rest bucket when k < V)."""
    scaled = teacher.values.float() / temperature
    others = teacher.vocab_size - teacher.k
    if others <= 0:
        return F.log_softmax(scaled, dim=-1)
    # The logit each other token would share to hold the rest mass at T=1; tempered
    # token by token, the bucket weighs (V - k) of them.
    rest_logit = teacher.rest_log_mass() + teacher.lse.float() - math.log(others)
    rest = (rest_logit / temperature + math.log(others)).unsqueeze(-1)
    weights = torch.cat([scaled, rest], dim=-1)
    return weights - torch.logsumexp(weights, dim=-1, keepdim=True)


def bucket_log_probs(
    student_logits: torch.Tensor, teacher: torch.Tensor | TopKLogits, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher and student log-probabilities at ``temperature`` on common buckets.

    Dense teacher logits ``(n, T, V)``: the V tokens. :class:`~kdforge.data.TopKLogits`:
    the k kept tokens plus one rest bucket (none when k = V); see the module docstring.

    Returns:
        ``(log_p_teacher, log_q_student)``, both ``(n, T, B)`` float32; the teacher's
        floored at a large negative value and detached.
    """
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    if isinstance(teacher, TopKLogits):
        indices = teacher.indices.long()
        log_p = _teacher_top_k_log_probs(teacher, temperature)
        kept = log_q.gather(-1, indices)
        if teacher.k < teacher.vocab_size:
            rest = log_q.scatter(-1, indices, float("-inf")).logsumexp(-1, keepdim=True)
            kept = torch.cat([kept, rest], dim=-1)
        log_q = kept
    else:
        log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    return log_p.detach().clamp_min(_LOG_FLOOR), log_q


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """``KL(a || b)`` over the last dimension, from log-probabilities (0 log 0 = 0)."""
    a = log_a.exp()
    return torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a)).sum(-1)


def position_divergence(
    log_p: torch.Tensor, log_q: torch.Tensor, divergence: Divergence, beta: float = 0.5
) -> torch.Tensor:
    """The divergence of teacher ``p`` and student ``q`` at every position ``(n, T)``.

    Args:
        log_p: Teacher log-probabilities ``(n, T, B)``.
        log_q: Student log-probabilities on the same buckets.
        divergence: ``forward_kl``, ``reverse_kl`` or ``gjsd``.
        beta: The GKD mixing weight of ``gjsd`` (0: forward KL, 1: reverse KL).
    """
    if divergence == "forward_kl" or (divergence == "gjsd" and beta <= 0.0):
        return _kl(log_p, log_q)
    if divergence == "reverse_kl" or (divergence == "gjsd" and beta >= 1.0):
        return _kl(log_q, log_p)
    log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log(1.0 - beta))
    return beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)


class LMKD(LossStrategy):
    """Per-token KD of a language model: forward KL, reverse KL or GKD's JSD(beta)."""

    name = "lm_kd"
    Params = LMKDParams
    output_kinds = frozenset({"token_logits"})
    hyperparameters = (
        HParam("temperature", 0.5, 4.0, log=True, default=1.0, help="Softmax temperature T."),
        HParam("alpha", 0.0, 1.0, default=0.5, help="Weight of the distillation term."),
    )
    _beta = HParam(
        "beta", 0.0, 1.0, default=0.5, help="GKD's beta: m = beta*teacher + (1-beta)*student."
    )

    @classmethod
    def declared_hyperparameters(cls, params: PluginParams | None) -> tuple[HParam, ...]:
        """Temperature and alpha, plus ``beta`` for ``divergence: gjsd``."""
        if isinstance(params, LMKDParams) and params.divergence == "gjsd":
            return (*cls.hyperparameters, cls._beta)
        return cls.hyperparameters

    @classmethod
    def reads_top_k(cls, params: PluginParams | None) -> bool:
        """Yes: the divergence is taken on the kept tokens plus a rest bucket."""
        return True

    @property
    def divergence(self) -> Divergence:
        """The configured divergence."""
        params = self.params
        return params.divergence if isinstance(params, LMKDParams) else "forward_kl"

    def kd_term(
        self, student_logits: torch.Tensor, teacher: torch.Tensor | TopKLogits, labels: torch.Tensor
    ) -> torch.Tensor:
        """``T^2 *`` the divergence averaged over the positions whose target is not -2."""
        if student_logits.dim() != 3 or teacher.dim() != 3:
            raise PluginError(
                f"lm_kd compares per-position logits (n, T, V); got student "
                f"{tuple(student_logits.shape)} and teacher {tuple(teacher.shape)}"
            )
        if tuple(teacher.shape) != tuple(student_logits.shape):
            raise PluginError(
                f"lm_kd: teacher outputs {tuple(teacher.shape)} and student outputs "
                f"{tuple(student_logits.shape)} differ (rows, positions, vocabulary)",
                hint="the student must predict over the teacher's vocabulary",
            )
        temperature = self.hparams["temperature"]
        log_p, log_q = bucket_log_probs(student_logits, teacher, temperature)
        values = position_divergence(log_p, log_q, self.divergence, self.hparams.get("beta", 0.5))
        return position_mean(values, labels.to(values.device)) * temperature**2

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``(1-alpha) * label_loss + alpha * T^2 * D`` and its parts."""
        if student.logits is None or teacher.logits is None:
            raise PluginError("lm_kd needs logits from both the student and the teacher")
        alpha = self.hparams["alpha"]
        kd = self.kd_term(student.logits, teacher.logits, labels)
        ce = self.label_loss(student.logits, labels)
        total = (1.0 - alpha) * ce + alpha * kd
        return LossResult(total, {"kd": float(kd.detach()), "ce": float(ce.detach())})


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``lm_kd`` loss."""
    register("lm_kd", LMKD)
