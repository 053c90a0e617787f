"""Loss ``lm_hidden_cosine``: DistilBERT's cosine loss on hidden states, per real token.

Sanh et al. (2019) align the directions of the student's and teacher's last hidden
states, token by token (``nn.CosineEmbeddingLoss`` with target 1)::

    L_cos = mean over real positions of (1 - cos(h_student[i, t], h_teacher[i, t]))

Features are ``(n, T, d)`` token vectors; a position counts when its target is not
``-2`` (:data:`~kdforge.data.NOT_A_WORD`), as in ``lm_kd`` (the loss sees targets,
not inputs: in a masked LM that is the masked positions, in a causal LM every
non-padding position). When the widths differ a learned linear projection
(``d_student -> d_teacher``) maps the student's vectors, trained with the student.
By default only the deepest exposed layers are paired (``auto: last``); name them with
``layers: {<teacher feature>: <student module path>}``.

DistilBERT's triple loss is a ``composite`` of ``lm_kd`` (soft targets, label weight
0), ``lm_kd`` with ``alpha: 0`` (the MLM label loss) and this loss with
``ce_weight: 0`` (see docs/losses.md); the paper's weights were 5 : 2 : 1 at T = 2.

    loss = cos_weight * L_cos + ce_weight * label_loss
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import kdforge
from kdforge.errors import PluginError
from kdforge.interfaces import HParam, LossResult, ModelOutput
from kdforge.plugins.losses._features import Adapter, FeatureLoss, FeatureLossParams
from kdforge.plugins.losses._positions import position_mean

__all__ = ["LMHiddenCosine", "LMHiddenCosineParams"]


class LMHiddenCosineParams(FeatureLossParams):
    """Parameters of ``lm_hidden_cosine``."""

    auto: Literal["all", "last"] = Field(
        "last", description="Automatic mapping: 'last' pairs the deepest layers (DistilBERT)."
    )


class LMHiddenCosine(FeatureLoss):
    """One minus the cosine of student and teacher token vectors, over real positions."""

    name = "lm_hidden_cosine"
    Params = LMHiddenCosineParams
    output_kinds = frozenset({"token_logits"})
    hyperparameters = (
        HParam("cos_weight", 0.1, 10.0, log=True, default=1.0, help="Weight of the cosine term."),
    )

    def make_adapter(
        self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]
    ) -> nn.Module | None:
        """A linear projection of the last dimension when the widths differ."""
        if student_shape[-1] == teacher_shape[-1]:
            return None
        return Adapter(student_shape, teacher_shape, last_dim=True)

    def cosine_term(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> torch.Tensor:
        """Mean over the paired layers of the masked mean of ``1 - cos``."""
        terms = []
        for s, t in self.feature_pairs(student, teacher):
            if s.dim() != 3 or tuple(s.shape[:2]) != tuple(labels.shape):
                raise PluginError(
                    f"lm_hidden_cosine compares token vectors (n, T, d) at the targets' "
                    f"positions {tuple(labels.shape)}; got a feature of shape {tuple(s.shape)}",
                    hint="pair hidden-state layers (loss.params.layers)",
                )
            cos = F.cosine_similarity(s.float(), t.to(s.device).float(), dim=-1)
            terms.append(position_mean(1.0 - cos, labels.to(cos.device)))
        return torch.stack(terms).mean()

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``cos_weight * L_cos + ce_weight * label_loss``."""
        l_cos = self.cosine_term(student, teacher, labels)
        return self.with_ce(self.hparams["cos_weight"] * l_cos, "cos", student, labels)


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``lm_hidden_cosine`` loss."""
    register("lm_hidden_cosine", LMHiddenCosine)
