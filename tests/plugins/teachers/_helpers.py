"""Small digits teachers for the teacher tests (trained in about a second each)."""

from __future__ import annotations

from pathlib import Path

import torch

from kdforge.checkpoint import save_checkpoint
from kdforge.plugins.datasets.digits import Digits
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.training.evaluate import evaluate
from kdforge.training.trainer import TrainSettings, train_model

#: Three different small MLPs: an ensemble of them beats (or ties) its members.
ARCHS = (
    {"depth": 1, "width_0": 32, "dropout": 0.0},
    {"depth": 1, "width_0": 16, "dropout": 0.0},
    {"depth": 2, "width_0": 24, "width_1": 16, "dropout": 0.0},
)


def train_small_teachers(folder: Path, epochs: int = 6) -> list[Path]:
    """Train one small MLP per entry of :data:`ARCHS` on digits; return the checkpoints."""
    splits = Digits().load(0)
    paths = []
    for i, arch in enumerate(ARCHS):
        torch.manual_seed(100 + i)
        model = MLPSpace().build(arch, splits.info)
        train_model(
            model,
            x=splits.train.x,
            y=splits.train.y,
            val_x=splits.val.x,
            val_y=splits.val.y,
            settings=TrainSettings(epochs=epochs, lr=3e-3, seed=i),
        )
        acc, _ = evaluate(model, splits.test.x, splits.test.y)
        paths.append(
            save_checkpoint(
                folder / f"teacher{i}.pt",
                space="mlp",
                arch=arch,
                info=splits.info,
                model=model,
                meta={"test_acc": acc},
            )
        )
    return paths
