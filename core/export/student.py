"""Exporting the chosen student through the configured exporter plugin, with a parity check.

The exporter plugin (``export.exporter``, ``onnx`` by default) is the only code that
writes a deployable model from PyTorch; this module hands it the student and the
check inputs and refuses a file whose outputs stray from PyTorch's beyond
``export.tolerance``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from kdforge.data import ExportResult, Inputs
from kdforge.errors import ExportError
from kdforge.interfaces import Exporter

__all__ = [
    "CHECK_ROWS",
    "check_inputs",
    "check_parity",
    "export_student",
    "rename_onnx_output",
    "weight_files",
]

#: Test rows the exported model is compared with PyTorch on.
CHECK_ROWS = 256


def check_inputs(test_x: Inputs, rows: int = CHECK_ROWS) -> torch.Tensor:
    """The first ``rows`` test inputs as a tensor (floats as float32, token ids as is)."""
    inputs = test_x[:rows]  # a tensor, for in-memory and streamed inputs alike
    return inputs.float() if inputs.is_floating_point() else inputs


def export_student(
    exporter: Exporter,
    model: nn.Module,
    inputs: torch.Tensor,
    folder: Path,
    tolerance: float,
    emit: Callable[[str], None] = print,
) -> ExportResult:
    """Export ``model`` to ``folder/student<suffix>`` and check it against PyTorch.

    Args:
        exporter: The exporter plugin.
        model: The student in eval mode, on the CPU.
        inputs: The check inputs (:func:`check_inputs`).
        folder: The search folder.
        tolerance: Largest allowed max abs difference (``export.tolerance``).
        emit: Where the parity line goes.

    Raises:
        ExportError: the export failed, or the file disagrees with PyTorch.
    """
    target = folder / f"student{exporter.suffix}"
    result = exporter.export(model, inputs, target)
    emit(f"exported {target.name}: max |onnxruntime - torch| = {result.max_abs_diff:.2e}")
    check_parity(result.max_abs_diff, tolerance, target)
    return result


def check_parity(max_abs_diff: float, tolerance: float, path: Path) -> None:
    """Raise ExportError when the exported model strays from PyTorch beyond tolerance."""
    if not max_abs_diff <= tolerance:  # also catches NaN
        raise ExportError(
            f"exported model {path.name} disagrees with PyTorch: max abs difference "
            f"{max_abs_diff:.3g} > export.tolerance {tolerance:g}",
            hint="raise export.tolerance if this precision is acceptable",
        )


def weight_files(path: Path) -> list[Path]:
    """The exported file and the weights file an exporter may keep beside it."""
    external = path.with_name(path.name + ".data")
    return [path, external] if external.exists() else [path]


def rename_onnx_output(path: Path, name: str) -> None:
    """Give an ONNX model's single output the task's name (``values`` for regression).

    Served answers are keyed by the output's name, so a regression model answers
    ``{"values": ...}`` rather than ``{"logits": ...}``. External weight files are left
    where they are (only the graph is rewritten).
    """
    # onnx is heavy to import and only an ONNX export of a regression student needs it.
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    (output,) = model.graph.output
    old = output.name
    if old == name:
        return
    output.name = name
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
    onnx.save(model, str(path))
