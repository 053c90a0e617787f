"""Ray Serve application: the champion ONNX student as autoscaling replicas.

Each replica holds one onnxruntime session of the registered model (fetched once by
the process that builds the application and shipped to the replicas, so replicas on
other nodes need no access to the MLflow store). It speaks MLflow's scoring protocol:

* ``POST /invocations`` with ``{"inputs": [...]}`` -> ``{"predictions": {"<output>": ...}}``
  (the model's output: ``logits``; ``values`` for regression)
* ``GET /ping`` and ``GET /health`` -> 200 once the replica is up

and refuses bad requests with a 4xx and an MLflow-style JSON error (see
:mod:`kdforge.deploy.validation`); unlike ``mlflow models serve`` it also refuses
batches over ``max_batch_size`` with 413.

Start it with ``kdforge serve --ray`` (:func:`serve_ray`) or Ray's own CLI::

    serve run kdforge.deploy.ray_serve_app:build_app model_uri=models:/NAME@champion
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import ray
from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import JSONResponse

from kdforge.cluster.ray_init import init_ray
from kdforge.deploy.serve import ServeError, ServeTarget
from kdforge.deploy.validation import BadRequest, parse_request
from kdforge.errors import ConfigError
from kdforge.tracking.registry import OnnxModelFile, fetch_onnx_model

__all__ = [
    "OnnxClassifier",
    "RayServeSettings",
    "bind_app",
    "build_app",
    "serve_ray",
    "start_ray_serve",
]


@dataclass(frozen=True)
class RayServeSettings:
    """How the Ray Serve application runs.

    Attributes:
        max_batch_size: Largest number of rows in one request (more -> 413).
        min_replicas: Autoscaling lower bound.
        max_replicas: Autoscaling upper bound.
        target_ongoing_requests: Ongoing requests per replica the autoscaler aims at.
        num_cpus: CPUs reserved per replica (fractions allowed).
        threads: onnxruntime intra-op threads per replica.
    """

    max_batch_size: int = 1024
    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 4.0
    num_cpus: float = 1.0
    threads: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.max_batch_size < 1:
            problems.append(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            problems.append(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got "
                f"{self.min_replicas}..{self.max_replicas}"
            )
        if self.num_cpus <= 0 or self.threads < 1 or self.target_ongoing_requests <= 0:
            problems.append("num_cpus, threads and target_ongoing_requests must be positive")
        if problems:
            raise ConfigError(
                "Ray Serve settings: " + "; ".join(problems),
                hint="fix the --max-batch-size / --min-replicas / --max-replicas / "
                "--replica-cpus options",
            )


@serve.deployment(name="kdforge-student")
class OnnxClassifier:
    """One replica: an onnxruntime session behind MLflow's scoring protocol."""

    def __init__(self, model: dict[str, Any], max_batch_size: int, threads: int) -> None:

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            model["onnx_bytes"], sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_name = model["input_name"]
        self._output_name = model["output_name"]
        self._input_shape = tuple(model["input_shape"])
        self._dtype = model["input_dtype"]
        self._max_batch_size = max_batch_size
        self._model_uri = model["model_uri"]

    async def __call__(self, request: Request) -> JSONResponse:
        """Route one HTTP request (the proxy passes the Starlette request)."""
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET" and path in ("ping", "health"):
            return JSONResponse({"status": "ok", "model_uri": self._model_uri})
        if request.method != "POST" or path not in ("invocations", ""):
            return JSONResponse(
                {
                    "error_code": "ENDPOINT_NOT_FOUND",
                    "message": f"{request.method} {request.url.path} is not served; "
                    "use POST /invocations or GET /ping",
                },
                status_code=404,
            )
        try:
            batch = parse_request(
                await request.body(),
                input_shape=self._input_shape,
                dtype=self._dtype,
                max_batch_size=self._max_batch_size,
            )
        except BadRequest as exc:
            return JSONResponse(exc.payload(), status_code=exc.status)
        # onnxruntime releases the GIL; a worker thread keeps the event loop free for
        # other requests and health checks while a batch runs.
        logits = await asyncio.to_thread(self._predict, batch)
        return JSONResponse({"predictions": {self._output_name: logits.tolist()}})

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run([self._output_name], {self._input_name: batch})[0])


def bind_app(model: OnnxModelFile, settings: RayServeSettings | None = None) -> Application:
    """The Serve application for an already-fetched model.

    Args:
        model: The ONNX model and its input signature.
        settings: Replicas, autoscaling and request limits.
    """
    settings = settings or RayServeSettings()
    # serve.deployment turns the class into a Deployment; mypy still sees the class.
    deployment = OnnxClassifier.options(  # type: ignore[attr-defined]
        autoscaling_config={
            "min_replicas": settings.min_replicas,
            "max_replicas": settings.max_replicas,
            "target_ongoing_requests": settings.target_ongoing_requests,
        },
        ray_actor_options={"num_cpus": settings.num_cpus},
    )
    return deployment.bind(asdict(model), settings.max_batch_size, settings.threads)


def build_app(args: dict[str, str]) -> Application:
    """Application builder for ``serve run kdforge.deploy.ray_serve_app:build_app``.

    Args:
        args: ``model_uri`` (required), optional ``tracking_uri`` and any field of
            :class:`RayServeSettings` (as text, as ``serve run`` passes them).
    """
    args = dict(args)
    model_uri = args.pop("model_uri", None)
    if not model_uri:
        raise ValueError("build_app needs model_uri=models:/NAME@champion")
    tracking_uri = args.pop("tracking_uri", None)
    fields = RayServeSettings.__dataclass_fields__
    unknown = sorted(set(args) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown arguments {unknown}; known: model_uri, tracking_uri, {sorted(fields)}"
        )
    defaults = RayServeSettings()
    values = {key: type(getattr(defaults, key))(value) for key, value in args.items()}
    return bind_app(fetch_onnx_model(model_uri, tracking_uri), RayServeSettings(**values))


def start_ray_serve(
    target: ServeTarget,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: RayServeSettings | None = None,
    address: str | None = None,
    app_name: str = "kdforge",
) -> str:
    """Deploy the Ray Serve application and return its base URL (non-blocking).

    Joins the Ray cluster at ``address`` (or the one already initialised, or a new
    local one), starts Serve's HTTP proxy on ``host:port`` and waits until the
    replicas answer.

    Raises:
        ServeError: Serve could not start (e.g. the port is taken).
    """
    model = fetch_onnx_model(target.model_uri, target.tracking_uri)
    _init_ray(address)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(bind_app(model, settings), name=app_name, route_prefix="/")
    except Exception as exc:
        raise ServeError(
            f"Ray Serve could not start {target.model_uri} on {host}:{port}: {exc}",
            hint="pick a free --port, or shut down an older Serve instance (serve shutdown)",
        ) from None
    url = f"http://{host}:{port}"
    # serve.start keeps the HTTP options of a Serve instance already running on the
    # cluster, so check that the app really answers where it was asked to.
    probe = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/ping"
    if not _answers(probe, timeout_s=60.0):
        raise ServeError(
            f"Ray Serve deployed {target.model_uri} but nothing answers {probe}",
            hint="a Serve instance with other HTTP options may already run on this cluster: "
            "stop it (serve shutdown) or use its port",
        )
    return url


def _answers(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def _init_ray(address: str | None) -> None:
    init_ray(address, log_to_driver=True, error=ServeError)


def serve_ray(
    target: ServeTarget,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: RayServeSettings | None = None,
    address: str | None = None,
    emit: Any = print,
) -> int:
    """Run the Ray Serve application until SIGINT/SIGTERM, then shut Serve down."""
    stopping = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stopping.set()

    _init_ray(address)
    # After ray.init, which installs SIGTERM handlers that exit the driver without
    # shutting Serve down; a signal during start-up stops Serve once it is up.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = start_ray_serve(target, host, port, settings, address)
        emit(f"serving {target.model_uri} with Ray Serve on {url}")
        emit('  POST /invocations {"inputs": [...]}; GET /ping. Stop with Ctrl-C.')
        while not stopping.is_set():
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if ray.is_initialized():
            serve.shutdown()
    return 0
