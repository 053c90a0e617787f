"""Loss ``cosine_embedding``: align hidden states / embeddings by cosine (DistilBERT).

Sanh et al. (2019), DistilBERT, add a cosine embedding loss that aligns the
directions of the student's and teacher's hidden states::

    L_cos = mean(1 - cos(h_student, h_teacher))
    loss  = cos_weight * L_cos + ce_weight * CE(labeled rows)

It needs no teacher logits, so it works for teachers that only give embeddings.
Features are compared per example (flattened) or, with ``per_position: true``, per
position along the last dimension (token vectors ``(n, seq, d)``, as DistilBERT).
When the sizes differ, a learned linear adapter maps the student's vectors to the
teacher's size (DistilBERT needs none: its student shares the teacher's width).
By default only the deepest layers are paired.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import kdforge
from kdforge.interfaces import HParam, LossResult, ModelOutput
from kdforge.plugins.losses._features import Adapter, FeatureLoss, FeatureLossParams, flat


class CosineParams(FeatureLossParams):
    """Parameters of ``cosine_embedding``."""

    auto: Literal["all", "last"] = Field(
        "last", description="Automatic mapping: 'last' pairs the deepest layers (embeddings)."
    )
    per_position: bool = Field(
        False,
        description="Compare vectors along the last dimension (tokens) instead of whole rows.",
    )


class CosineEmbedding(FeatureLoss):
    """One minus the cosine between student and teacher hidden states (DistilBERT)."""

    name = "cosine_embedding"
    Params = CosineParams
    hyperparameters = (
        HParam("cos_weight", 0.1, 10.0, log=True, default=1.0, help="Weight of the cosine term."),
    )

    def make_adapter(
        self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]
    ) -> nn.Module | None:
        """A linear map to the teacher's vector size when it differs."""
        params = self.params
        assert isinstance(params, CosineParams)
        if params.per_position:
            if student_shape[-1] == teacher_shape[-1]:
                return None
            return Adapter(student_shape, teacher_shape, last_dim=True)
        if student_shape == teacher_shape:
            return None
        return Adapter(student_shape, teacher_shape)

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``cos_weight * mean(1 - cos) + ce_weight * CE``."""
        params = self.params
        assert isinstance(params, CosineParams)
        terms = []
        for s, t in self.feature_pairs(student, teacher):
            if params.per_position:
                cos = F.cosine_similarity(s, t.to(s.dtype), dim=-1)
            else:
                cos = F.cosine_similarity(flat(s), flat(t).to(s.dtype), dim=1)
            terms.append((1.0 - cos).mean())
        l_cos = torch.stack(terms).mean()
        return self.with_ce(self.hparams["cos_weight"] * l_cos, "cos", student, labels)


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``cosine_embedding`` loss."""
    register("cosine_embedding", CosineEmbedding)
