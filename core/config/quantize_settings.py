"""The ``quantize`` section of a search config (int8 quantization of the student).

Kept apart from :mod:`kdforge.export.quantize` so that :mod:`kdforge.config` can import it
without pulling in onnxruntime.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["QuantizeSettings"]


class QuantizeSettings(BaseModel):
    """Int8 quantization of the exported ONNX student (``kdforge quantize``, or after a search)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "dynamic", "static"] = Field(
        "off",
        description="'dynamic': int8 weights, activations quantized at run time; 'static': "
        "int8 weights and activations, scales calibrated on training inputs; 'off': skip.",
    )
    max_accuracy_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Register the quantized model only if its test accuracy is at most this "
        "much below the float model's (0.01 = 1 point).",
    )
    calibration_samples: int = Field(
        256, ge=1, description="Training inputs used to calibrate 'static' quantization."
    )
    alias: str | None = Field(
        "int8",
        min_length=1,
        description="Registry alias for the quantized version (null: none; 'champion' "
        "makes it the served model).",
    )
    latency_runs: int = Field(
        200, ge=10, description="Timed single-row runs per model for the latency report."
    )
