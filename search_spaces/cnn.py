"""Search space ``cnn``: convolutional students that adapt to 1-D or 2-D inputs.

The input shape decides the convolution: ``(C, H, W)`` uses ``Conv2d``, ``(C, L)``
uses ``Conv1d``, and flat ``(F,)`` inputs are treated as one channel of length F.
Define-by-run: ``depth`` first, then ``channels_i`` per block; ``kernel`` and
``dropout`` are shared. Each block halves the spatial size while it is at least 2.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

import kdforge
from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.interfaces import PluginParams, SearchSpace


class CNNParams(PluginParams):
    """Ranges of the ``cnn`` search space."""

    min_depth: int = Field(1, ge=1, description="Fewest conv blocks.")
    max_depth: int = Field(3, ge=1, description="Most conv blocks.")
    min_channels: int = Field(4, ge=1, description="Fewest channels per block (log-uniform).")
    max_channels: int = Field(64, ge=1, description="Most channels per block (log-uniform).")
    kernels: list[int] = Field(
        default_factory=lambda: [3, 5], min_length=1, description="Kernel sizes to choose from."
    )
    max_dropout: float = Field(0.3, ge=0, lt=1, description="Dropout is sampled in [0, this].")

    @model_validator(mode="after")
    def _check(self) -> CNNParams:
        if self.min_depth > self.max_depth:
            raise ValueError(f"min_depth ({self.min_depth}) > max_depth ({self.max_depth})")
        if self.min_channels > self.max_channels:
            raise ValueError(
                f"min_channels ({self.min_channels}) > max_channels ({self.max_channels})"
            )
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd positive sizes, got {self.kernels}")
        return self


class CNNNet(nn.Module):
    """Conv-BN-ReLU(-pool) blocks, global average pooling and a linear head."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        channels: list[int],
        kernel: int,
        dropout: float,
        num_classes: int,
    ) -> None:
        super().__init__()
        if len(input_shape) == 1:
            self.unsqueeze = True
            in_channels, spatial = 1, [input_shape[0]]
        elif len(input_shape) in (2, 3):
            self.unsqueeze = False
            in_channels, spatial = input_shape[0], list(input_shape[1:])
        else:
            raise ConfigError(f"cnn supports 1-D or 2-D inputs, got input shape {input_shape}")
        two_d = len(spatial) == 2
        conv = nn.Conv2d if two_d else nn.Conv1d
        norm = nn.BatchNorm2d if two_d else nn.BatchNorm1d
        pool = nn.MaxPool2d if two_d else nn.MaxPool1d
        blocks = []
        previous = in_channels
        for width in channels:
            layers: list[nn.Module] = [
                conv(previous, width, kernel, padding=kernel // 2),
                norm(width),
                nn.ReLU(),
            ]
            if min(spatial) >= 2:
                layers.append(pool(2))
                spatial = [s // 2 for s in spatial]
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1) if two_d else nn.AdaptiveAvgPool1d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(previous, num_classes)
        # Block outputs (n, C, *spatial) then the pooled embedding, for kdforge.features.
        self.feature_names = (*(f"blocks.{i}" for i in range(len(channels))), "pool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(n, *input_shape)`` to logits ``(n, num_classes)``."""
        h = x.unsqueeze(1) if self.unsqueeze else x
        for block in self.blocks:
            h = block(h)
        h = torch.flatten(self.pool(h), 1)
        return self.head(self.dropout(h))


class CNNSpace(SearchSpace):
    """Convolutional nets (1-D or 2-D by input shape): depth, channels per block, kernel."""

    name = "cnn"
    Params = CNNParams
    #: Measured in benchmarks/lr_ranges.py (docs/search_spaces.md, "Learning rates").
    default_lr = (1e-3, 5e-2)

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample ``depth``, ``channels_i`` per block, ``kernel`` and ``dropout``."""
        p = self.params
        assert isinstance(p, CNNParams)
        depth = trial.suggest_int("depth", p.min_depth, p.max_depth)
        for i in range(depth):
            trial.suggest_int(f"channels_{i}", p.min_channels, p.max_channels, log=True)
        trial.suggest_categorical("kernel", list(p.kernels))
        if p.max_dropout > 0:
            trial.suggest_float("dropout", 0.0, p.max_dropout)
        return None

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Build the CNN for ``arch`` (``depth``, ``channels_i``, ``kernel``, ``dropout``)."""
        depth = int(arch["depth"])
        channels = [int(arch[f"channels_{i}"]) for i in range(depth)]
        return CNNNet(
            tuple(info.input_shape),
            channels,
            int(arch.get("kernel", 3)),
            float(arch.get("dropout", 0.0)),
            info.num_classes,
        )

    def describe(self, arch: dict[str, Any]) -> str:
        """``cnn 3x[16,32,32] k3``: depth x channels per block, kernel size."""
        depth = int(arch["depth"])
        channels = ",".join(str(int(arch[f"channels_{i}"])) for i in range(depth))
        return f"cnn {depth}x[{channels}] k{int(arch.get('kernel', 3))}"

    def feature_names(self, arch: dict[str, Any], info: DataInfo) -> list[str]:
        """``blocks.0`` .. ``blocks.{depth-1}`` (feature maps) and ``pool`` (pooled).

        ``pool`` has shape ``(n, C, 1..)``.
        """
        return [*(f"blocks.{i}" for i in range(int(arch["depth"]))), "pool"]


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``cnn`` search space."""
    register("cnn", CNNSpace)
