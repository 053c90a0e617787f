"""Loss ``fitnets``: hints from teacher layers guide student layers.

Romero et al. (2015), "FitNets: Hints for Thin Deep Nets": a regressor ``r`` maps
the student's *guided* layer to the shape of the teacher's *hint* layer and the
student learns to match it::

    hint = 1/2 * || u_teacher(x) - r(v_student(x)) ||^2

Here the squared error is averaged over elements (so layers of different sizes weigh
alike) and over the mapped pairs; ``r`` is learned with the student (an
:class:`~kdforge.plugins.losses._features.Adapter`: a 1x1 convolution for feature maps,
a linear layer otherwise) and is the identity when the shapes already agree. The
paper trains the hint first and then distills with KD; kdforge trains both at once::

    loss = hint_weight * hint + ce_weight * CE(labeled rows)

Combine with ``hinton_kd`` through ``composite`` for the paper's second stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import kdforge
from kdforge.interfaces import HParam, LossResult, ModelOutput
from kdforge.plugins.losses._features import Adapter, FeatureLoss


class FitNets(FeatureLoss):
    """Hint loss: squared error between teacher features and adapted student features."""

    name = "fitnets"
    hyperparameters = (
        HParam("hint_weight", 0.01, 100.0, log=True, default=1.0, help="Weight of the hint term."),
    )

    def make_adapter(
        self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]
    ) -> nn.Module | None:
        """A learned regressor when the shapes differ, else none."""
        if student_shape == teacher_shape:
            return None
        return Adapter(student_shape, teacher_shape)

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``hint_weight * hint + ce_weight * CE``."""
        pairs = self.feature_pairs(student, teacher)
        hint = torch.stack([0.5 * F.mse_loss(s, t) for s, t in pairs]).mean()
        return self.with_ce(self.hparams["hint_weight"] * hint, "hint", student, labels)


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``fitnets`` loss."""
    register("fitnets", FitNets)
