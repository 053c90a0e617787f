"""The app ``kdforge serve`` runs under uvicorn: MLflow's scoring server with limits.

uvicorn imports :func:`create_app` in each worker (``--factory``); the model URI and
the limits come from the environment :func:`kdforge.deploy.serve.mlflow_serve_command`
sets, so every worker serves the same model under the same limits.
"""

from __future__ import annotations

import os

from kdforge.deploy.limits import ASGIApp, RequestLimits
from kdforge.tracking.serving import scoring_app

__all__ = ["BODY_ENV", "MODEL_ENV", "ROWS_ENV", "create_app"]

MODEL_ENV = "KDFORGE_SERVE_MODEL_URI"
BODY_ENV = "KDFORGE_SERVE_MAX_BODY_BYTES"
ROWS_ENV = "KDFORGE_SERVE_MAX_ROWS"


def create_app() -> ASGIApp:
    """MLflow's scoring app for ``$KDFORGE_SERVE_MODEL_URI`` behind the request limits."""
    return RequestLimits(
        scoring_app(os.environ[MODEL_ENV]),
        max_body_bytes=int(os.environ[BODY_ENV]),
        max_rows=int(os.environ[ROWS_ENV]),
    )
