"""Export parity check: loud failure above tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.errors import ExportError
from kdforge.export.student import check_parity


def test_parity_within_tolerance_passes() -> None:
    check_parity(1e-6, 1e-4, Path("m.onnx"))


@pytest.mark.parametrize("diff", [1e-3, float("nan"), float("inf")])
def test_parity_above_tolerance_fails(diff: float) -> None:
    with pytest.raises(ExportError, match=r"m\.onnx disagrees with PyTorch"):
        check_parity(diff, 1e-4, Path("m.onnx"))
