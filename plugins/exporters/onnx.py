"""Exporter ``onnx``: the student as an ONNX graph with a dynamic batch axis.

A per-position student (token ids ``(n, T)`` in, ``(n, T, ...)`` out: a language model)
also gets a dynamic sequence axis, so one graph answers prompts of any length up to
the model's own limit (``sequence_axis``).

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
    sequence_axis: bool | None = Field(
        None,
        description="Make axis 1 of the input (the sequence) dynamic too. Default: yes for "
        "a per-position student (integer token ids (n, T) in, (n, T, ...) out, such as a "
        "language model), no otherwise (the graph then takes the length it was exported at).",
    )


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
        axes: dict[int, torch.export.Dim] = {0: torch.export.Dim("batch")}
        if _sequence_axis(model, sample, params.sequence_axis):
            axes[1] = torch.export.Dim("sequence")
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
                    dynamic_shapes=(axes,),
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


def _sequence_axis(model: torch.nn.Module, sample: torch.Tensor, wanted: bool | None) -> bool:
    """Whether axis 1 is exported as dynamic (``sequence_axis``; ``None``: per-position)."""
    if wanted is not None:
        return wanted
    if sample.ndim != 2 or sample.is_floating_point() or sample.shape[1] < 2:
        return False
    with torch.no_grad():
        out = model(sample)
    # Per position: the output keeps the input's (n, T) and adds an axis (logits over V).
    return isinstance(out, torch.Tensor) and out.ndim == 3 and out.shape[:2] == sample.shape


@kdforge.hookimpl
def register_exporters(register: kdforge.Register) -> None:
    """Register the ``onnx`` exporter."""
    register("onnx", OnnxExporter)
