"""MLflow's scoring server for a logged model, as an ASGI app (``kdforge serve``).

:func:`scoring_app` loads the model with ``mlflow.pyfunc.load_model`` and builds the
same FastAPI app ``mlflow models serve`` runs (``POST /invocations``, ``GET /ping``);
:mod:`kdforge.deploy.mlflow_app` wraps it with kdforge's request limits.
"""

from __future__ import annotations

from typing import Any

from mlflow.pyfunc import load_model, scoring_server

__all__ = ["scoring_app"]


def scoring_app(model_uri: str) -> Any:
    """The MLflow scoring server app of ``model_uri`` (MLflow's tracking URI applies)."""
    return scoring_server.init(load_model(model_uri))
