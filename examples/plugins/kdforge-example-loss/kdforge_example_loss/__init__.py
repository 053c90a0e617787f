"""kdforge plugin ``dist_kd``: DIST, distillation by Pearson correlation of predictions.

Huang, You, Wang, Qian & Xu (NeurIPS 2022), "Knowledge Distillation from A Stronger
Teacher". Exact KL matching is too strict when the teacher is much stronger than the
student; DIST only asks the *relations* to match. With ``p = softmax(z / T)``::

    inter = 1 - mean_i pearson(p_s[i, :], p_t[i, :])    # per example, across classes
    intra = 1 - mean_j pearson(p_s[:, j], p_t[:, j])    # per class, across the batch
    loss  = ce_weight * CE(labeled rows) + T^2 * (beta * inter + gamma * intra)

``beta``, ``gamma`` and ``T`` are declared as hyperparameters, so a kdforge search
samples them (they appear as ``loss.beta``, ``loss.gamma``, ``loss.temperature`` in
every MLflow trial run). Unlabeled rows (label ``-1``) enter only the relation terms.

Registered through the ``kdforge`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge import UNLABELED, HParam, LossResult, LossStrategy, ModelOutput, PluginParams

__all__ = ["DistKD", "DistParams", "pearson_rows"]
__version__ = "0.1.0"


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    return F.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True), dim=1)


class DistParams(PluginParams):
    """Parameters of ``dist_kd``."""

    ce_weight: float = Field(1.0, ge=0, description="Weight of cross-entropy on labeled rows.")


class DistKD(LossStrategy):
    """DIST: match inter- and intra-class Pearson correlations of the predictions."""

    name = "dist_kd"
    Params = DistParams
    hyperparameters = (
        HParam("beta", 0.1, 10.0, log=True, default=1.0, help="Weight of the inter-class term."),
        HParam("gamma", 0.1, 10.0, log=True, default=1.0, help="Weight of the intra-class term."),
        HParam("temperature", 1.0, 8.0, log=True, default=4.0, help="Softmax temperature T."),
    )

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``ce_weight * CE + T^2 * (beta * inter + gamma * intra)`` and its parts."""
        if student.logits is None or teacher.logits is None:
            raise ValueError("dist_kd needs logits from the student and the teacher")
        params = self.params
        assert isinstance(params, DistParams)
        t = self.hparams["temperature"]
        p_s = F.softmax(student.logits / t, dim=1)
        p_t = F.softmax(teacher.logits.to(p_s.dtype) / t, dim=1)
        inter = 1.0 - pearson_rows(p_s, p_t).mean()
        intra = 1.0 - pearson_rows(p_s.T, p_t.T).mean() if len(p_s) > 1 else inter * 0.0
        relation = t**2 * (self.hparams["beta"] * inter + self.hparams["gamma"] * intra)
        labeled = labels != UNLABELED
        if params.ce_weight > 0 and bool(labeled.any()):
            ce = F.cross_entropy(student.logits[labeled], labels[labeled])
        else:
            ce = student.logits.sum() * 0.0
        total = params.ce_weight * ce + relation
        parts = {
            "inter": float(inter.detach()),
            "intra": float(intra.detach()),
            "ce": float(ce.detach()),
        }
        return LossResult(total, parts)


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``dist_kd`` loss."""
    register("dist_kd", DistKD)
