"""Loss ``attention_transfer``: match spatial attention maps of paired layers.

Zagoruyko & Komodakis (2017), "Paying More Attention to Attention": the activation-
based attention map of a feature ``A`` of shape ``(C, H, W)`` is
``F(A) = sum_c |A_c|^p`` (p = 2), flattened and L2-normalised; the loss is::

    loss = CE + beta/2 * sum_j mean( (Q_s^j/||Q_s^j|| - Q_t^j/||Q_t^j||)^2 )

as in the authors' code (``at(x) = normalize(x.pow(2).mean(1))``, squared error
averaged over positions and batch, beta = 1000 there). Maps of different spatial
size are average-pooled to the smaller one. A flat feature ``(n, d)`` counts as one
channel of length d (the method is meant for convolutional features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import kdforge
from kdforge.interfaces import HParam, LossResult, ModelOutput
from kdforge.plugins.losses._features import FeatureLoss


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """``(n, C, *spatial)`` -> channel mean of squares ``(n, *spatial)``; ``(n, d)`` -> squares."""
    if feature.dim() <= 2:
        return feature.pow(2)
    return feature.pow(2).mean(1)


def _pool_to(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(maps.shape[1:]) == size:
        return maps
    if len(size) == 1:
        return F.adaptive_avg_pool1d(maps.unsqueeze(1), size).squeeze(1)
    return F.adaptive_avg_pool2d(maps.unsqueeze(1), (size[0], size[1])).squeeze(1)


def at_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the normalised attention maps of one layer pair."""
    a_s, a_t = attention_map(student), attention_map(teacher)
    if a_s.dim() != a_t.dim():
        a_s, a_t = a_s.reshape(len(a_s), -1), a_t.reshape(len(a_t), -1)
    size = tuple(min(s, t) for s, t in zip(a_s.shape[1:], a_t.shape[1:], strict=True))
    q_s = F.normalize(_pool_to(a_s, size).reshape(len(a_s), -1), dim=1)
    q_t = F.normalize(_pool_to(a_t, size).reshape(len(a_t), -1), dim=1)
    return (q_s - q_t).pow(2).mean()


class AttentionTransfer(FeatureLoss):
    """Activation-based attention transfer (sum of squares over channels, L2-normalised)."""

    name = "attention_transfer"
    hyperparameters = (
        HParam("beta", 1.0, 1e4, log=True, default=1000.0, help="Weight of the attention term."),
    )

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``beta/2 * sum_j AT_j + ce_weight * CE``."""
        pairs = self.feature_pairs(student, teacher)
        at = torch.stack([at_distance(s, t) for s, t in pairs]).sum()
        return self.with_ce(self.hparams["beta"] / 2 * at, "at", student, labels)


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``attention_transfer`` loss."""
    register("attention_transfer", AttentionTransfer)
