"""Loss ``rkd``: relational knowledge distillation, distance and angle terms.

Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation": the student keeps
the *relations* between examples of a batch that the teacher's embeddings have,
not the embeddings themselves (so dimensions may differ, no adapter needed)::

    psi_D(t_i, t_j)      = ||t_i - t_j|| / mu,   mu = mean over i != j of ||t_i - t_j||
    psi_A(t_i, t_j, t_k) = cos angle(t_i - t_j, t_k - t_j)
    L_D = mean huber(psi_D(s), psi_D(t)),  L_A = mean huber(psi_A(s), psi_A(t))
    loss = distance_weight * L_D + angle_weight * L_A + ce_weight * CE

with the Huber (smooth L1, delta = 1) loss over all pairs / triplets as in the
authors' code. Embeddings are the paired features flattened per example; by default
only the deepest pair (the penultimate embedding), as in the paper. Defaults follow
the paper's classification setting (lambda_D = 25, lambda_A = 50).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge.interfaces import HParam, LossResult, ModelOutput
from kdforge.plugins.losses._features import FeatureLoss, FeatureLossParams, flat

_EPS = 1e-12


class RKDParams(FeatureLossParams):
    """Parameters of ``rkd`` (by default only the deepest layers are paired)."""

    auto: Literal["all", "last"] = Field(
        "last", description="Automatic mapping: 'last' pairs the deepest layers (the paper's)."
    )


def pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(n, n)`` between rows, with an exact zero diagonal."""
    sq = e.pow(2).sum(1)
    prod = sq.unsqueeze(0) + sq.unsqueeze(1) - 2 * e @ e.t()
    dist = prod.clamp(min=_EPS).sqrt()
    off_diagonal = 1.0 - torch.eye(len(e), dtype=e.dtype, device=e.device)
    return dist * off_diagonal


def distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-D: Huber loss between mean-normalised pairwise distances."""
    if len(student) < 2:
        return student.sum() * 0.0
    with torch.no_grad():
        t_d = pairwise_distances(teacher)
        t_d = t_d / t_d[t_d > 0].mean().clamp(min=_EPS)
    s_d = pairwise_distances(student)
    positive = s_d[s_d > 0]
    s_d = s_d / (positive.mean() if len(positive) else s_d.new_tensor(1.0)).clamp(min=_EPS)
    return F.smooth_l1_loss(s_d, t_d)


def angles(e: torch.Tensor) -> torch.Tensor:
    """Cosines ``(n*n*n,)`` of the angles between ``e_i - e_j`` and ``e_k - e_j``."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


def angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-A: Huber loss between the angle cosines of all triplets."""
    if len(student) < 3:
        return student.sum() * 0.0
    with torch.no_grad():
        t_a = angles(teacher)
    return F.smooth_l1_loss(angles(student), t_a)


class RKD(FeatureLoss):
    """Relational KD on embeddings: pairwise distances and triplet angles."""

    name = "rkd"
    Params = RKDParams
    hyperparameters = (
        HParam("distance_weight", 1.0, 100.0, log=True, default=25.0, help="lambda_D."),
        HParam("angle_weight", 1.0, 200.0, log=True, default=50.0, help="lambda_A."),
    )

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``lambda_D * L_D + lambda_A * L_A + ce_weight * CE``."""
        terms_d, terms_a = [], []
        for s, t in self.feature_pairs(student, teacher):
            s, t = flat(s), flat(t).to(s.dtype)
            terms_d.append(distance_loss(s, t))
            terms_a.append(angle_loss(s, t))
        l_d, l_a = torch.stack(terms_d).sum(), torch.stack(terms_a).sum()
        term = self.hparams["distance_weight"] * l_d + self.hparams["angle_weight"] * l_a
        result = self.with_ce(term, "rkd", student, labels)
        result.parts.update({"rkd_distance": float(l_d.detach()), "rkd_angle": float(l_a.detach())})
        return result


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``rkd`` loss."""
    register("rkd", RKD)
