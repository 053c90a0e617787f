"""Shared parts of the feature-based losses: params, layer pairing, adapters.

A feature loss reads ``ModelOutput.features`` of teacher and student. In ``bind``
(once, before training) it pairs teacher layers with student layers (the config's
``layers`` mapping or the automatic one by relative depth, see
:func:`kdforge.features.match_layers`) and builds any learnable adapter; the
trainer then optimises the adapters with the student.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from kdforge.errors import ConfigError
from kdforge.features import match_layers
from kdforge.interfaces import (
    OUTPUT_KINDS,
    LossNeeds,
    LossResult,
    LossStrategy,
    ModelOutput,
    PluginParams,
)

__all__ = ["Adapter", "FeatureLoss", "FeatureLossParams", "flat"]


class FeatureLossParams(PluginParams):
    """Parameters every feature-based loss shares."""

    layers: dict[str, str] | None = Field(
        None,
        description="Teacher feature -> student feature pairs; leave out for the automatic "
        "mapping by relative depth.",
    )
    auto: Literal["all", "last"] = Field(
        "all",
        description="Automatic mapping: 'all' pairs min(#teacher, #student) layers by "
        "relative depth, 'last' only the deepest two.",
    )
    ce_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the task's label loss (cross-entropy for classification) on "
        "the labeled rows (0: feature term only).",
    )


def flat(x: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` -> ``(n, prod(...))``."""
    return x.reshape(len(x), -1)


class Adapter(nn.Module):
    """Maps a student feature to the shape of a teacher feature (FitNets' regressor).

    Conv feature maps of the same rank get a 1x1 convolution on channels (plus
    adaptive average pooling when the spatial sizes differ); anything else is
    flattened and mapped by a linear layer.

    Args:
        student_shape: Per-example shape of the student feature.
        teacher_shape: Per-example shape of the teacher feature.
        last_dim: Map only the last dimension with a linear layer (token vectors).
    """

    def __init__(
        self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], last_dim: bool = False
    ) -> None:
        super().__init__()
        self.teacher_shape = teacher_shape
        self.mode = "linear"
        if last_dim:
            self.mode = "last"
            self.map: nn.Module = nn.Linear(student_shape[-1], teacher_shape[-1])
        elif len(student_shape) == len(teacher_shape) and len(student_shape) in (2, 3):
            self.mode = "conv"
            conv = nn.Conv1d if len(student_shape) == 2 else nn.Conv2d
            pool = nn.AdaptiveAvgPool1d if len(student_shape) == 2 else nn.AdaptiveAvgPool2d
            layers: list[nn.Module] = [conv(student_shape[0], teacher_shape[0], 1)]
            if student_shape[1:] != teacher_shape[1:]:
                layers.append(pool(teacher_shape[1:]))
            self.map = nn.Sequential(*layers)
        else:
            self.map = nn.Linear(math.prod(student_shape), math.prod(teacher_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Student feature ``(n, *student_shape)`` -> ``(n, *teacher_shape)``."""
        if self.mode == "linear":
            return self.map(flat(x)).reshape(len(x), *self.teacher_shape)
        return self.map(x)


class FeatureLoss(LossStrategy):
    """Base of losses on intermediate features: pairing, adapters, the CE term."""

    Params: ClassVar[type[PluginParams]] = FeatureLossParams
    needs_logits = False
    needs_features = True
    # Features say nothing about the task; the label term goes through the task.
    output_kinds = frozenset(OUTPUT_KINDS)

    def __init__(
        self, params: PluginParams | None = None, hparams: dict[str, float] | None = None
    ) -> None:
        super().__init__(params, hparams)
        self.pairs: list[tuple[str, str]] | None = None
        self.adapters = nn.ModuleDict()

    @classmethod
    def needs(cls, params: PluginParams | None) -> LossNeeds:
        """Features of the mapped layers (all exposed ones when the mapping is automatic)."""
        layers = getattr(params, "layers", None)
        if not layers:
            return LossNeeds(logits=False, features=True)
        return LossNeeds(
            logits=False,
            features=True,
            teacher_layers=tuple(layers),
            student_layers=tuple(layers.values()),
        )

    @property
    def feature_params(self) -> FeatureLossParams:
        """The params, typed."""
        assert isinstance(self.params, FeatureLossParams)
        return self.params

    def bind(self, student: ModelOutput, teacher: ModelOutput) -> None:
        """Pair the layers and build the adapters (see :meth:`make_adapter`).

        Binds once: a loss instance belongs to one student, and a second call (e.g.
        the trainer's, after a caller bound it) keeps the existing adapters.
        """
        if self.pairs is not None:
            return
        p = self.feature_params
        self.pairs = match_layers(
            list(teacher.features), list(student.features), p.layers, p.auto, "loss.params.layers"
        )
        for t_name, s_name in self.pairs:
            s_feat, t_feat = student.features[s_name], teacher.features[t_name]
            adapter = self.make_adapter(tuple(s_feat.shape[1:]), tuple(t_feat.shape[1:]))
            if adapter is not None:
                self.adapters[self._key(t_name, s_name)] = adapter.to(
                    device=s_feat.device, dtype=s_feat.dtype
                )

    def make_adapter(
        self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]
    ) -> nn.Module | None:
        """The learnable map for one pair, or None (default: none)."""
        return None

    def parameters(self) -> list[nn.Parameter]:
        """The adapters' parameters."""
        return list(self.adapters.parameters())

    @staticmethod
    def _key(t_name: str, s_name: str) -> str:
        # ModuleDict keys may not contain dots.
        return f"{t_name}->{s_name}".replace(".", "_")

    def feature_pairs(
        self, student: ModelOutput, teacher: ModelOutput
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(student, teacher)`` feature tensors per pair, the student's adapted."""
        if self.pairs is None:
            self.bind(student, teacher)
        assert self.pairs is not None
        out = []
        for t_name, s_name in self.pairs:
            s_feat = student.features[s_name]
            key = self._key(t_name, s_name)
            if key in self.adapters:
                s_feat = self.adapters[key](s_feat)
            out.append((s_feat, teacher.features[t_name]))
        return out

    def with_ce(
        self, term: torch.Tensor, part: str, student: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """``term + ce_weight * label_loss(labeled rows)``, both parts for logging.

        The label term is the task's (cross-entropy for classification); its part
        keeps the name ``ce`` for every task so that logged runs stay comparable.
        """
        weight = self.feature_params.ce_weight
        if weight == 0:
            return LossResult(term, {part: float(term.detach())})
        if student.logits is None:
            raise ConfigError(f"loss {self.name!r}: ce_weight > 0 needs student logits")
        ce = self.label_loss(student.logits, labels)
        return LossResult(
            term + weight * ce, {part: float(term.detach()), "ce": float(ce.detach())}
        )
