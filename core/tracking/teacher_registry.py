"""Registering a trained teacher in the MLflow Model Registry (``kdforge train-teacher``).

The model is logged with ``mlflow.pytorch.log_model``, which in MLflow 3 saves it with
``torch.export`` (no pickled code; the batch dimension is dynamic because the input
example has several rows), registered under ``registered_model_name`` and given an
alias, so a search can use it as ``teacher: {name: mlflow, params: {uri:
models:/NAME@ALIAS}}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kdforge.data import Inputs
from kdforge.errors import TrackingError

__all__ = ["log_registered_teacher"]


def log_registered_teacher(
    model: nn.Module, train_x: Inputs, name: str, alias: str, tracking_uri: str
) -> dict[str, Any]:
    """Log ``model`` in the active MLflow run, register it and set ``alias``.

    Args:
        model: The trained teacher (put in eval mode here).
        train_x: Training inputs; a few rows become the input example and signature.
        name: Registered model name.
        alias: Alias to point at the new version.
        tracking_uri: The tracking/registry store.

    Returns:
        ``{"registered_model": name, "version": int, "alias": alias, "uri": "models:/NAME@ALIAS"}``.

    Raises:
        TrackingError: logging or registering failed.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    model.eval()
    example = train_x[: min(4, len(train_x))]
    with torch.no_grad():
        output = model(example)
    example_np = np.asarray(example.detach().cpu().numpy())
    try:
        info = mlflow.pytorch.log_model(
            model,
            name="teacher",
            input_example=example_np,
            signature=infer_signature(example_np, output.detach().cpu().numpy()),
            registered_model_name=name,
        )
        version = int(info.registered_model_version)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise TrackingError(
            f"registered_model_name: registering the teacher as {name!r} failed: "
            f"{str(exc).strip().splitlines()[0]}",
            hint="check the tracking URI (a file store has no registry; use sqlite:///...)",
        ) from None
    return {
        "registered_model": name,
        "version": version,
        "alias": alias,
        "uri": f"models:/{name}@{alias}",
    }
