"""Search space ``mlp``: fully connected students of sampled depth and widths.

Define-by-run: ``depth`` is sampled first, then one ``width_i`` per layer, so the
widths always follow the sampled depth. Inputs of any shape are flattened.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

import kdforge
from kdforge.data import DataInfo
from kdforge.interfaces import PluginParams, SearchSpace


class MLPParams(PluginParams):
    """Ranges of the ``mlp`` search space."""

    min_depth: int = Field(1, ge=1, description="Fewest hidden layers.")
    max_depth: int = Field(3, ge=1, description="Most hidden layers.")
    min_width: int = Field(8, ge=1, description="Smallest hidden width (log-uniform).")
    max_width: int = Field(256, ge=1, description="Largest hidden width (log-uniform).")
    max_dropout: float = Field(0.3, ge=0, lt=1, description="Dropout is sampled in [0, this].")

    @model_validator(mode="after")
    def _check(self) -> MLPParams:
        if self.min_depth > self.max_depth:
            raise ValueError(f"min_depth ({self.min_depth}) > max_depth ({self.max_depth})")
        if self.min_width > self.max_width:
            raise ValueError(f"min_width ({self.min_width}) > max_width ({self.max_width})")
        return self


class MLPNet(nn.Module):
    """Flatten, then ``depth`` blocks of Linear-ReLU-Dropout, then a linear head."""

    def __init__(self, in_features: int, widths: list[int], dropout: float, num_classes: int):
        super().__init__()
        self.flatten = nn.Flatten()
        blocks = []
        previous = in_features
        for width in widths:
            blocks.append(nn.Sequential(nn.Linear(previous, width), nn.ReLU(), nn.Dropout(dropout)))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(previous, num_classes)
        # Hidden activations, shallow first, for feature-based losses (kdforge.features).
        self.feature_names = tuple(f"blocks.{i}" for i in range(len(widths)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(n, ...)`` to logits ``(n, num_classes)``."""
        h = self.flatten(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


class MLPSpace(SearchSpace):
    """Multi-layer perceptrons: depth, a width per layer, dropout."""

    name = "mlp"
    Params = MLPParams
    #: Measured in benchmarks/lr_ranges.py (docs/search_spaces.md, "Learning rates").
    default_lr = (1e-3, 5e-2)

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample ``depth``, ``width_0..width_{depth-1}`` and ``dropout``."""
        p = self.params
        assert isinstance(p, MLPParams)
        depth = trial.suggest_int("depth", p.min_depth, p.max_depth)
        for i in range(depth):
            trial.suggest_int(f"width_{i}", p.min_width, p.max_width, log=True)
        if p.max_dropout > 0:
            trial.suggest_float("dropout", 0.0, p.max_dropout)
        return None

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Build the MLP for ``arch`` (keys ``depth``, ``width_i``, optional ``dropout``)."""
        depth = int(arch["depth"])
        widths = [int(arch[f"width_{i}"]) for i in range(depth)]
        in_features = math.prod(info.input_shape)
        return MLPNet(in_features, widths, float(arch.get("dropout", 0.0)), info.num_classes)

    def describe(self, arch: dict[str, Any]) -> str:
        """``mlp 2x[64,32]``: depth x hidden widths."""
        depth = int(arch["depth"])
        widths = ",".join(str(int(arch[f"width_{i}"])) for i in range(depth))
        return f"mlp {depth}x[{widths}]"

    def feature_names(self, arch: dict[str, Any], info: DataInfo) -> list[str]:
        """``blocks.0`` .. ``blocks.{depth-1}``: each hidden layer's activations ``(n, width)``."""
        return [f"blocks.{i}" for i in range(int(arch["depth"]))]


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``mlp`` search space."""
    register("mlp", MLPSpace)
