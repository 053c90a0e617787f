"""Checks shared by the tasks whose targets are float rows ``(n, outputs)``."""

from __future__ import annotations

import torch

from kdforge.data import DataSplits
from kdforge.errors import DataError

__all__ = ["check_float_rows", "labeled_cells"]


def check_float_rows(task: str, splits: DataSplits, width: int, *, binary: bool) -> None:
    """Every split's targets are float ``(n, width)``; with ``binary``, 0/1 or NaN.

    Raises:
        DataError: naming the task, the split and what is wrong.
    """
    for name, split in splits.named_splits().items():
        y = split.y
        if y.ndim != 2 or not y.dtype.is_floating_point or y.shape[1] != width:
            raise DataError(
                f"task {task}: the {name} split's targets are {y.dtype} of shape "
                f"{tuple(y.shape)}, not float rows of {width} values",
                hint="the dataset must give one float column per target "
                "(task: classification takes integer class ids)",
            )
        present = y[~torch.isnan(y)]
        if torch.isinf(present).any():
            raise DataError(f"task {task}: the {name} split's targets contain inf")
        if binary and not bool(((present == 0) | (present == 1)).all()):
            bad = present[(present != 0) & (present != 1)][0]
            raise DataError(
                f"task {task}: the {name} split has a label value {float(bad):g}; "
                "labels must be 0 or 1 (NaN: unknown)"
            )


def labeled_cells(targets: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the target cells that hold a value (NaN: no label)."""
    return ~torch.isnan(targets)
