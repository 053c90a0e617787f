"""Teacher ``ensemble``: several teachers combined into one (nested ensembles allowed).

Distilling an ensemble into one small model is the classic use of distillation
(Hinton et al. 2015). The members are any teacher configs (``name`` + ``params``,
another ``ensemble`` included), combined per batch by

* ``mean_logits``: the weighted mean of the members' logits, or
* ``mean_probs``: the weighted mean of their softmax probabilities; the ensemble's
  logits are then ``log`` of that mean (so ``softmax(logits)`` is the mean).

``weights`` (optional, one per member, normalised) weight the mean.
:meth:`EnsembleTeacher.accuracy_report` gives each member's and the ensemble's
accuracy on a labeled split; the search prints it (and caches it with the outputs).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

import kdforge
from kdforge import PluginRef, instantiate, iter_batches
from kdforge.data import Split
from kdforge.errors import ConfigError
from kdforge.interfaces import ModelOutput, PluginParams, Teacher

__all__ = ["EnsembleParams", "EnsembleTeacher", "combine_logits"]


class EnsembleParams(PluginParams):
    """Parameters of the ``ensemble`` teacher."""

    members: list[PluginRef] = Field(
        min_length=1, description="Teacher configs ({name, params}); nested ensembles allowed."
    )
    combine: Literal["mean_logits", "mean_probs"] = Field(
        "mean_probs", description="Weighted mean of logits, or of probabilities (log taken)."
    )
    weights: list[float] | None = Field(
        None, description="One non-negative weight per member (normalised); default equal."
    )

    @model_validator(mode="after")
    def _check_weights(self) -> EnsembleParams:
        if self.weights is None:
            return self
        if len(self.weights) != len(self.members):
            raise ValueError(
                f"weights has {len(self.weights)} entries but there are {len(self.members)} members"
            )
        if any(w < 0 or not math.isfinite(w) for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        return self


def combine_logits(logits: list[torch.Tensor], weights: list[float], combine: str) -> torch.Tensor:
    """Combine the members' logits of one batch.

    Args:
        logits: One ``(n, classes)`` tensor per member.
        weights: Normalised weights, one per member.
        combine: ``mean_logits`` or ``mean_probs``.
    """
    stacked = torch.stack([t.float() for t in logits])
    w = torch.tensor(weights, dtype=stacked.dtype).view(-1, 1, 1)
    if combine == "mean_logits":
        return (w * stacked).sum(0)
    # log(sum_i w_i softmax_i) computed stably in log space.
    log_probs = torch.log_softmax(stacked, dim=-1) + torch.log(w.clamp_min(1e-30))
    return torch.logsumexp(log_probs, dim=0)


class EnsembleTeacher(Teacher):
    """Several teachers combined by the mean of their logits or probabilities."""

    name = "ensemble"
    Params = EnsembleParams

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        params = self.params
        assert isinstance(params, EnsembleParams)
        # Members are resolved now, so a bad member config fails before anything runs.
        self.members: list[Teacher] = [
            instantiate("teacher", ref, f"teacher.params.members.{i}")
            for i, ref in enumerate(params.members)
        ]
        raw = params.weights or [1.0] * len(self.members)
        self.weights = [w / sum(raw) for w in raw]

    def load(self) -> None:
        """Load every member and check they agree on classes and input shape."""
        for member in self.members:
            member.load()
        self._check_agreement(
            "predicts", [m.expected_num_classes() for m in self.members], "classes"
        )
        self._check_agreement(
            "expects inputs of shape", [m.expected_input_shape() for m in self.members], "shape"
        )

    def _check_agreement(self, verb: str, values: list[Any], what: str) -> None:
        known = [(i, v) for i, v in enumerate(values) if v is not None]
        if len({tuple(v) if isinstance(v, tuple) else v for _, v in known}) > 1:
            listing = ", ".join(f"member {i} ({self._label(i)}) {verb} {v}" for i, v in known)
            raise ConfigError(
                f"teacher 'ensemble': the members disagree on {what}: {listing}",
                hint="ensemble members must be teachers of the same task and inputs",
            )

    def _label(self, index: int) -> str:
        params = self.params
        assert isinstance(params, EnsembleParams)
        return params.members[index].name

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's logits for one batch."""
        out = []
        for i, member in enumerate(self.members):
            logits = member.predict(x).logits
            if logits is None:
                raise ConfigError(
                    f"teacher 'ensemble': member {i} ({self._label(i)}) gives no logits",
                    hint="ensembles combine logits; use classification teachers",
                )
            out.append(logits)
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """The combined logits of one batch."""
        params = self.params
        assert isinstance(params, EnsembleParams)
        return ModelOutput(combine_logits(self.member_logits(x), self.weights, params.combine))

    def predict_features(self, x: torch.Tensor, names: Any = None) -> ModelOutput:
        """Combined logits plus each member's features, named ``member<i>.<feature>``."""
        params = self.params
        assert isinstance(params, EnsembleParams)
        logits, features = [], {}
        for i, member in enumerate(self.members):
            prefix = f"member{i}."
            wanted = None
            if names is not None:
                wanted = [n[len(prefix) :] for n in names if n.startswith(prefix)]
            output = member.predict_features(x, wanted)
            if output.logits is not None:
                logits.append(output.logits)
            features.update({prefix + k: v for k, v in output.features.items()})
        combined = combine_logits(logits, self.weights, params.combine) if logits else None
        return ModelOutput(combined, features)

    def accuracy_report(self, split: Split, batch_size: int = 512) -> dict[str, float]:
        """Accuracy of each member and of the ensemble on a labeled split.

        Returns:
            ``{"member0:checkpoint": acc, ..., "ensemble": acc}`` (only labeled rows count).
        """
        params = self.params
        assert isinstance(params, EnsembleParams)
        keep = split.y >= 0
        per_member: list[list[torch.Tensor]] = [[] for _ in self.members]
        with torch.no_grad():
            for _, batch in iter_batches(split.x, batch_size):
                for i, logits in enumerate(self.member_logits(batch)):
                    per_member[i].append(logits.float())
        member_logits = [torch.cat(parts) for parts in per_member]
        labels = split.y[keep]
        report = {
            f"member{i}:{self._label(i)}": _accuracy(logits[keep], labels)
            for i, logits in enumerate(member_logits)
        }
        combined = combine_logits(member_logits, self.weights, params.combine)
        report["ensemble"] = _accuracy(combined[keep], labels)
        return report

    def fingerprint(self) -> str:
        """Hash of the members' fingerprints, weights and combination rule."""
        params = self.params
        assert isinstance(params, EnsembleParams)
        text = json.dumps(
            {
                "combine": params.combine,
                "weights": self.weights,
                "members": [[m.name, m.fingerprint()] for m in self.members],
            }
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def num_parameters(self) -> int:
        """Sum of the members' parameters."""
        return sum(m.num_parameters() for m in self.members)

    def expected_input_shape(self) -> tuple[int, ...] | None:
        """The members' common input shape, if any member knows it."""
        shapes = [m.expected_input_shape() for m in self.members]
        return next((s for s in shapes if s is not None), None)

    def expected_num_classes(self) -> int | None:
        """The members' common number of classes, if any member knows it."""
        counts = [m.expected_num_classes() for m in self.members]
        return next((c for c in counts if c is not None), None)

    def torch_module(self) -> torch.nn.Module | None:
        """None: an ensemble has no single module (features come from the members)."""
        return None


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(-1) == labels).float().mean())


@kdforge.hookimpl
def register_teachers(register: kdforge.Register) -> None:
    """Register the ``ensemble`` teacher."""
    register("ensemble", EnsembleTeacher)
