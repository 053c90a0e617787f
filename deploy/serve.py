"""``kdforge serve``: put a registered student behind HTTP.

Two servers, one protocol (MLflow's ``POST /invocations``):

* default: MLflow's scoring server (what ``mlflow models serve -m models:/NAME@champion
  --env-manager local`` runs) under uvicorn, wrapped by
  :class:`~kdforge.deploy.limits.RequestLimits`: the signature logged with the model
  checks shapes and types; bodies over ``max_body_mb`` and batches over
  ``max_batch_size`` rows get 413, ``NaN``/``Infinity`` inputs 400
  (:mod:`kdforge.deploy.mlflow_app`).
* ``--ray``: the Ray Serve application of :mod:`kdforge.deploy.ray_serve_app`
  (started by its :func:`~kdforge.deploy.ray_serve_app.serve_ray`), as autoscaling
  replicas, which also refuses batches over ``--max-batch-size`` (413).

The model argument is a model URI, a registered model name (``models:/NAME@ALIAS``
is served), or a search folder (its ``summary.json`` names the registered version;
for a text student, the ``NAME-text`` version that takes raw text).
A model file (``student.pt``, ``model.onnx``) is not servable: register it first.

Only ONNX models are served by default (:func:`check_servable`): an ONNX graph holds
no Python code, while other flavours (a pickled PyTorch model, a pyfunc ``python_model``)
unpickle code when the server loads them. The one exception is kdforge's own raw-text
model (``NAME-text``): a pyfunc logged from code whose code file is exactly the one
kdforge writes (it imports kdforge's installed ``TextClassifier``) and whose artifacts
are an ONNX graph, tokenizer files and JSON. A language-model student registered in the
``transformers`` flavour (:mod:`kdforge.tracking.hf_model`) is served too when it holds
only safetensors weights and text files and MLflow's own loader rebuilds it
(:func:`~kdforge.tracking.hf_model.is_safe_transformers_model`): a causal one answers
generated text, a masked one fill-mask predictions. ``--trust-pickle`` serves others anyway; without
it the server also runs with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` (MLflow 3.17
defaults it to true).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kdforge.config import resolve_tracking_uri
from kdforge.deploy.limits import DEFAULT_MAX_BODY_MB, DEFAULT_MAX_ROWS
from kdforge.deploy.mlflow_app import BODY_ENV, MODEL_ENV, ROWS_ENV
from kdforge.errors import ConfigError, KDForgeError
from kdforge.tracking.hf_model import is_safe_transformers_model
from kdforge.tracking.registry import model_flavors
from kdforge.tracking.text_model import is_kdforge_text_model

__all__ = [
    "ServeError",
    "ServeTarget",
    "check_servable",
    "mlflow_serve_command",
    "resolve_target",
    "serve_mlflow",
]


class ServeError(KDForgeError):
    """The model server could not be started."""


@dataclass(frozen=True)
class ServeTarget:
    """What to serve and where it is registered."""

    model_uri: str
    tracking_uri: str


def resolve_target(
    model: str, alias: str = "champion", tracking_uri: str | None = None
) -> ServeTarget:
    """Turn the ``kdforge serve`` model argument into a model URI and tracking URI.

    Args:
        model: ``models:/...`` (or any URI with a scheme), a search folder holding
            ``summary.json``, or a registered model name.
        alias: Alias used when ``model`` is a bare name.
        tracking_uri: Overrides the store a search folder records and
            ``MLFLOW_TRACKING_URI``.

    Raises:
        ConfigError: a search folder whose search registered no model.
    """
    folder = Path(model)
    has_scheme = "://" in model or ":/" in model
    if (
        not has_scheme
        and not folder.is_dir()
        and (folder.is_file() or folder.suffix.lower() in _MODEL_FILE_SUFFIXES or os.sep in model)
    ):
        raise ConfigError(
            f"kdforge serve: {model} is a file path, not a servable model",
            hint="serve takes a models:/NAME@ALIAS (or runs:/) URI, a registered model "
            "name or a finished search folder; register a model file first",
        )
    if not has_scheme and folder.is_dir():
        summary_file = folder / "summary.json"
        if not summary_file.exists():
            raise ConfigError(
                f"{folder} is a folder without summary.json",
                hint="pass a finished search folder, a models:/ URI or a registered model name",
            )
        summary = json.loads(summary_file.read_text())
        if "model_uri" not in summary and "text_model_uri" not in summary:
            raise ConfigError(
                f"the search in {folder} registered no model (export disabled or not ONNX)",
                hint="set export.enabled: true and export.exporter: onnx, then search again",
            )
        # A text student is served with its tokenizer: raw text in, class names out.
        return ServeTarget(
            model_uri=str(summary.get("text_model_uri") or summary["model_uri"]),
            tracking_uri=_tracking_uri(tracking_uri, _search_tracking_uri(folder, summary)),
        )
    uri = model if ":/" in model else f"models:/{model}@{alias}"
    return ServeTarget(model_uri=uri, tracking_uri=_tracking_uri(tracking_uri, None))


_MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pt2", ".onnx", ".ckpt", ".bin", ".pkl", ".safetensors")

#: The switch that lets ``kdforge serve`` load a model that unpickles code.
TRUST_PICKLE_SWITCH = "--trust-pickle"


def check_servable(target: ServeTarget, trust_pickle: bool = False) -> None:
    """Refuse, before a server starts, a model that is missing or would unpickle code.

    Args:
        target: What to serve.
        trust_pickle: Serve a model that is neither ONNX nor one of kdforge's checked
            text or language models (its code runs in the server).

    Raises:
        ConfigError: a local SQLite store that does not exist (nothing is created), or
            a model without the ONNX flavour when ``trust_pickle`` is false (kdforge's
            raw-text model and a safe ``transformers`` model excepted).
        TrackingError: the model cannot be found.
    """
    if target.tracking_uri.startswith("sqlite:///"):
        db = Path(target.tracking_uri[len("sqlite:///") :])
        if not db.is_file():
            raise ConfigError(
                f"kdforge serve: no tracking store at {db} (from {target.tracking_uri})",
                hint="pass --tracking-uri (or set MLFLOW_TRACKING_URI) to the store the "
                "model was registered in",
            )
    flavors, loader = model_flavors(target.model_uri, target.tracking_uri)
    if trust_pickle or ("onnx" in flavors and loader == "mlflow.onnx"):
        return
    if is_kdforge_text_model(target.model_uri, target.tracking_uri):
        return
    if "transformers" in flavors and is_safe_transformers_model(
        target.model_uri, target.tracking_uri
    ):
        return
    raise ConfigError(
        f"kdforge serve: refused {target.model_uri}: it is not an ONNX model (flavours "
        f"{sorted(flavors)}, loader {loader}), and loading it could unpickle code; "
        "nothing in it has run",
        hint=f"serve an ONNX model (kdforge registers its students as ONNX) or a "
        "transformers model of safetensors weights; only if you "
        f"trust this model, pass {TRUST_PICKLE_SWITCH}",
    )


def _search_tracking_uri(folder: Path, summary: dict) -> str | None:
    # summary.json holds the store the search registered in, resolved when it ran; the
    # config's tracking.uri may be unset or relative to the folder the search ran from.
    if summary.get("tracking_uri"):
        return str(summary["tracking_uri"])
    config_file = folder / "config.yaml"
    if not config_file.exists():
        return None
    raw = yaml.safe_load(config_file.read_text()) or {}
    return (raw.get("tracking") or {}).get("uri")


def _tracking_uri(explicit: str | None, from_search: str | None) -> str:
    # A search folder names the store its model is registered in: that beats an ambient
    # MLFLOW_TRACKING_URI, which may point at any other store.
    chosen = explicit or from_search or os.environ.get("MLFLOW_TRACKING_URI")
    return resolve_tracking_uri(chosen)


def mlflow_serve_command(
    target: ServeTarget,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    trust_pickle: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """The uvicorn command line and environment serving ``target`` with MLflow's app.

    MLflow's pickle switch is off unless ``trust_pickle`` (the ``--trust-pickle`` opt-in).

    Raises:
        ConfigError: a limit below 1 row or 1 KB.
    """
    if max_rows < 1 or max_body_mb * 10**6 < 1000:
        raise ConfigError(
            f"kdforge serve: limits must allow a request (max batch size {max_rows}, "
            f"max body {max_body_mb:g} MB)",
            hint="use --max-batch-size >= 1 and --max-body-mb >= 0.001",
        )
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "kdforge.deploy.mlflow_app:create_app",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = target.tracking_uri
    env[MODEL_ENV] = target.model_uri
    env[ROWS_ENV] = str(max_rows)
    env[BODY_ENV] = str(int(max_body_mb * 10**6))
    allow = "true" if trust_pickle else "false"
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = allow  # opt-in: --trust-pickle
    return argv, env


def serve_mlflow(
    target: ServeTarget,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    emit: Any = print,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    trust_pickle: bool = False,
) -> int:
    """Run MLflow's scoring server (with limits) in the foreground until it is stopped.

    SIGINT/SIGTERM are passed on to the server's whole process group (uvicorn starts
    worker processes), so stopping ``kdforge serve`` leaves nothing running.

    Returns:
        The server's exit status (0 when stopped by a signal).
    """
    argv, env = mlflow_serve_command(
        target,
        host,
        port,
        workers,
        max_rows=max_rows,
        max_body_mb=max_body_mb,
        trust_pickle=trust_pickle,
    )
    emit(f"serving {target.model_uri} (tracking {target.tracking_uri}) on http://{host}:{port}")
    emit('  POST /invocations {"inputs": [...]}; GET /ping. Stop with Ctrl-C.')
    emit(f"  limits: {max_rows} rows, {max_body_mb:g} MB per request (more -> 413)")
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    stopping = threading.Event()

    def _forward(signum: int, _frame: Any) -> None:
        stopping.set()
        _kill_group(process, signum)

    previous = {sig: signal.signal(sig, _forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _kill_group(process, signal.SIGTERM)
        _wait_group_gone(process)
    return 0 if stopping.is_set() else code


def _kill_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _wait_group_gone(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Wait until no process of the server's group is left (uvicorn outlives mlflow)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)
    _kill_group(process, signal.SIGKILL)
