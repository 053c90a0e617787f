"""Hostile payloads for the "no pickled code runs" tests.

:class:`Payload` unpickles into a call that writes a marker file: a test that loads
such a file and then finds the marker knows the pickle ran. Every refusal test checks
that the marker does *not* exist.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class Payload:
    """Unpickling this object calls ``Path.write_text(marker, "pwned")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.marker), "pwned"))


def write_hostile_pickle(path: Path, marker: Path) -> Path:
    """A plain pickle file whose loading writes ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


def log_hostile_pytorch_model(tracking_uri: str, marker: Path, workdir: Path, name: str) -> str:
    """Log (and register as ``name``) a pickled-PyTorch MLflow model whose ``model.pth``
    writes ``marker`` when unpickled; returns the run's ``runs:/`` URI."""
    import mlflow

    folder = workdir / f"{name}-model"
    mlflow.pytorch.save_model(torch.nn.Linear(64, 10), str(folder), serialization_format="pickle")
    torch.save(Payload(marker), folder / "data" / "model.pth")
    from kdforge.tracking.store import registry_at

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment("hostile")
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_artifacts(str(folder), artifact_path=name)
    uri = f"runs:/{run.info.run_id}/{name}"
    with registry_at(tracking_uri):  # not left pinned for the tests that follow
        mlflow.register_model(uri, name)
    return uri
