"""The MLflow pyfunc model of a registered text student (see :mod:`.text_model`).

Loaded by MLflow from the model's code file (models-from-code), never unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

# onnxruntime and transformers are imported by load_context, in the serving process.

__all__ = ["TextClassifier"]


class TextClassifier(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
    """Raw text in, class names out: tokenizer + ONNX student (MLflow pyfunc)."""

    def load_context(self, context: Any) -> None:
        """Load the ONNX session, the tokenizer folder and the settings."""
        import onnxruntime as ort
        from transformers import AutoTokenizer

        artifacts = context.artifacts
        self._settings = json.loads(Path(artifacts["settings"]).read_text())
        self._session = ort.InferenceSession(artifacts["onnx"], providers=["CPUExecutionProvider"])
        self._tokenizer = AutoTokenizer.from_pretrained(
            artifacts["tokenizer"], local_files_only=True
        )

    def predict(self, context: Any, model_input: Any, params: Any = None) -> pd.DataFrame:
        """One ``label`` (class name) and ``score`` (its probability) per text."""
        texts = _texts(model_input)
        settings = self._settings
        encoded = self._tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=int(settings["max_length"]),
            return_tensors="np",
        )
        ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        logits = self._session.run(None, {settings["input_name"]: ids})[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        names = settings["class_names"]
        return pd.DataFrame(
            {
                "label": [str(names[i]) for i in best],
                "score": probabilities[np.arange(len(best)), best].astype(float),
            }
        )


def _texts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        values = model_input[column].tolist()
    elif isinstance(model_input, np.ndarray | list | tuple):
        values = list(np.asarray(model_input).reshape(-1))
    else:
        values = [model_input]
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise mlflow.exceptions.MlflowException.invalid_parameter_value(
            f"this model takes texts (strings); got {type(bad[0]).__name__} {bad[0]!r}"
        )
    return [str(v) for v in values]
