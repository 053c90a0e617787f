"""Exporter ``onnx``: the student as an ONNX graph with a dynamic batch axis.

Exports with ``torch.onnx.export`` (the torch.export-based exporter), validates the
graph with ``onnx.checker`` and runs it in onnxruntime on the check inputs. A model
under 2 GB is one self-contained ``.onnx`` file; a larger one keeps its weights in
``<name>.onnx.data``, which must stay beside it. The export
fails with :class:`~kdforge.errors.ExportError` when the largest absolute difference
to PyTorch exceeds the configured tolerance (the caller checks it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

import kdforge
from kdforge.errors import ExportError
from kdforge.interfaces import Exporter, ExportResult, PluginParams

# onnx and onnxruntime are imported by export(): plugins load at every registry build,
# and the exporter runs once per search.


INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: Weights below this size go inside the ``.onnx`` file; protobuf caps one file at 2 GiB,
#: so a larger model keeps its weights in ``<name>.onnx.data`` beside it.
SELF_CONTAINED_BYTES = 2 * 10**9


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers (what the ONNX file has to hold)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class OnnxParams(PluginParams):
    """Parameters of the ``onnx`` exporter."""

    opset: int | None = Field(None, ge=7, description="ONNX opset (default: the exporter's).")


class OnnxExporter(Exporter):
    """ONNX graph (dynamic batch axis), checked against PyTorch with onnxruntime."""

    name = "onnx"
    Params = OnnxParams
    suffix = ".onnx"

    def export(self, model: torch.nn.Module, example: torch.Tensor, path: Path) -> ExportResult:
        """Export ``model`` and return the max abs difference to PyTorch on ``example``."""
        import onnx
        import onnxruntime as ort

        params = self.params
        assert isinstance(params, OnnxParams)
        model = model.eval().cpu()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sample = example[: max(2, min(len(example), 8))].cpu()
        # One self-contained file when it fits: a student.onnx copied on its own works.
        external_data = weight_bytes(model) >= SELF_CONTAINED_BYTES
        stale = path.with_name(path.name + ".data")
        if not external_data and stale.exists():
            stale.unlink()
        kwargs: dict = {}
        if params.opset is not None:
            kwargs["opset_version"] = params.opset
        noise = io.StringIO()
        # The exporter is chatty (progress lines, torchvision notices); keep the CLI quiet.
        exporter_logger = logging.getLogger("torch.onnx")
        previous_level = exporter_logger.level
        exporter_logger.setLevel(logging.ERROR)
        try:
            with (
                contextlib.redirect_stdout(noise),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (sample,),
                    str(path),
                    dynamo=True,
                    external_data=external_data,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    **kwargs,
                )
        except Exception as exc:
            raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
        finally:
            exporter_logger.setLevel(previous_level)
        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:
            raise ExportError(f"exported ONNX model {path} is invalid: {exc}") from exc
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        check = example.cpu()
        ort_out = session.run([OUTPUT_NAME], {INPUT_NAME: check.numpy()})[0]
        with torch.no_grad():
            torch_out = model(check).numpy()
        max_abs_diff = float(np.max(np.abs(ort_out - torch_out))) if torch_out.size else 0.0
        return ExportResult(path=path, max_abs_diff=max_abs_diff, format="onnx")


@kdforge.hookimpl
def register_exporters(register: kdforge.Register) -> None:
    """Register the ``onnx`` exporter."""
    register("onnx", OnnxExporter)
