"""Search space ``resnet``: residual CNN students (stages of basic blocks), 1-D or 2-D.

The input shape decides the convolution, as in ``cnn``: ``(C, H, W)`` uses
``Conv2d``, ``(C, L)`` uses ``Conv1d`` and flat ``(F,)`` inputs are one channel of
length F. Define-by-run: ``stages`` first, then per stage ``blocks_i`` (basic
blocks) and ``width_i`` (channels); ``kernel`` and ``dropout`` are shared. A stem
conv maps the input to ``width_0``; every stage after the first halves the spatial
size (stride 2) while it is at least 2. A block is conv-BN-ReLU-conv-BN plus a
shortcut (a 1x1 conv + BN when the width or the stride changes), then ReLU
(He et al. 2016).
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

__all__ = ["ResNetNet", "ResNetParams", "ResNetSpace"]


class ResNetParams(PluginParams):
    """Ranges of the ``resnet`` search space."""

    min_stages: int = Field(1, ge=1, description="Fewest stages.")
    max_stages: int = Field(3, ge=1, description="Most stages.")
    min_blocks: int = Field(1, ge=1, description="Fewest residual blocks per stage.")
    max_blocks: int = Field(2, ge=1, description="Most residual blocks per stage.")
    min_width: int = Field(8, ge=1, description="Fewest channels of a stage (log-uniform).")
    max_width: int = Field(64, ge=1, description="Most channels of a stage (log-uniform).")
    kernels: list[int] = Field(
        default_factory=lambda: [3], min_length=1, description="Kernel sizes to choose from."
    )
    max_dropout: float = Field(
        0.2, ge=0, lt=1, description="Dropout before the head is sampled in [0, this]."
    )

    @model_validator(mode="after")
    def _check(self) -> ResNetParams:
        for low, high in (
            ("min_stages", "max_stages"),
            ("min_blocks", "max_blocks"),
            ("min_width", "max_width"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) > {high} ({getattr(self, high)})")
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd positive sizes, got {self.kernels}")
        return self


def _layout(input_shape: tuple[int, ...]) -> tuple[bool, int, list[int]]:
    """``(add a channel axis, in_channels, spatial sizes)`` of an input shape."""
    if len(input_shape) == 1:
        return True, 1, [input_shape[0]]
    if len(input_shape) in (2, 3):
        return False, input_shape[0], list(input_shape[1:])
    raise ConfigError(f"resnet supports 1-D or 2-D inputs, got input shape {input_shape}")


class _Block(nn.Module):
    """A basic residual block: two convs and a (projection) shortcut."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, two_d: bool) -> None:
        super().__init__()
        conv = nn.Conv2d if two_d else nn.Conv1d
        norm = nn.BatchNorm2d if two_d else nn.BatchNorm1d
        pad = kernel // 2
        self.conv1 = conv(cin, cout, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = conv(cout, cout, kernel, padding=pad, bias=False)
        self.bn2 = norm(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        h = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNetNet(nn.Module):
    """Stem conv, residual stages, global average pooling, dropout and a linear head."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        blocks: list[int],
        widths: list[int],
        kernel: int,
        dropout: float,
        num_classes: int,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ConfigError(f"need one width per stage, got blocks={blocks} widths={widths}")
        self.unsqueeze, in_channels, spatial = _layout(tuple(input_shape))
        two_d = len(spatial) == 2
        conv = nn.Conv2d if two_d else nn.Conv1d
        norm = nn.BatchNorm2d if two_d else nn.BatchNorm1d
        self.stem = nn.Sequential(
            conv(in_channels, widths[0], kernel, padding=kernel // 2, bias=False),
            norm(widths[0]),
            nn.ReLU(),
        )
        stages = []
        previous = widths[0]
        for index, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1
            if index > 0 and min(spatial) >= 2:
                stride = 2
                spatial = [(s + 1) // 2 for s in spatial]
            layers = [_Block(previous, width, kernel, stride, two_d)]
            layers += [_Block(width, width, kernel, 1, two_d) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1) if two_d else nn.AdaptiveAvgPool1d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(previous, num_classes)
        # Stage outputs then the pooled embedding, for feature-based losses (kdforge.features).
        self.feature_names = (*(f"stages.{i}" for i in range(len(stages))), "pool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(n, *input_shape)`` to logits ``(n, num_classes)``."""
        h = self.stem(x.unsqueeze(1) if self.unsqueeze else x)
        for stage in self.stages:
            h = stage(h)
        return self.head(self.dropout(torch.flatten(self.pool(h), 1)))


class ResNetSpace(SearchSpace):
    """Residual CNNs (1-D or 2-D by input shape): stages, blocks and width per stage."""

    name = "resnet"
    Params = ResNetParams

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample ``stages``, ``blocks_i`` and ``width_i`` per stage, ``kernel``, ``dropout``."""
        p = self.params
        assert isinstance(p, ResNetParams)
        stages = trial.suggest_int("stages", p.min_stages, p.max_stages)
        for i in range(stages):
            trial.suggest_int(f"blocks_{i}", p.min_blocks, p.max_blocks)
            trial.suggest_int(f"width_{i}", p.min_width, p.max_width, log=True)
        trial.suggest_categorical("kernel", list(p.kernels))
        if p.max_dropout > 0:
            trial.suggest_float("dropout", 0.0, p.max_dropout)
        return None

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Build the network for ``arch`` (``stages``, ``blocks_i``, ``width_i``, ...)."""
        stages = int(arch["stages"])
        return ResNetNet(
            tuple(info.input_shape),
            [int(arch[f"blocks_{i}"]) for i in range(stages)],
            [int(arch[f"width_{i}"]) for i in range(stages)],
            int(arch.get("kernel", 3)),
            float(arch.get("dropout", 0.0)),
            info.num_classes,
        )

    def describe(self, arch: dict[str, Any]) -> str:
        """``resnet [2,1]x[16,32] k3``: blocks per stage x width per stage, kernel size."""
        stages = range(int(arch["stages"]))
        blocks = ",".join(str(int(arch[f"blocks_{i}"])) for i in stages)
        widths = ",".join(str(int(arch[f"width_{i}"])) for i in stages)
        return f"resnet [{blocks}]x[{widths}] k{int(arch.get('kernel', 3))}"

    def feature_names(self, arch: dict[str, Any], info: DataInfo) -> list[str]:
        """``stages.0`` .. ``stages.{n-1}`` (feature maps) and ``pool`` (pooled)."""
        return [*(f"stages.{i}" for i in range(int(arch["stages"]))), "pool"]


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``resnet`` search space."""
    register("resnet", ResNetSpace)
