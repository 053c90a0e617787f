"""The MLflow Model Registry: register students and teachers, fetch an ONNX model back.

Students (the search's chosen one, and its int8 version) are registered by
:func:`register_onnx`: ``mlflow.onnx.log_model`` with a pyfunc flavour, a tensor
signature and an input example, so ``mlflow models serve`` can serve every version.
Fetching (:func:`fetch_onnx_model`) downloads a registered version and returns the
ONNX bytes plus the signature's input shape, which is what the Ray Serve application
needs to validate requests.

A trained teacher (``kdforge train-teacher`` with ``registered_model_name``) is logged
by :func:`log_registered_teacher` with ``mlflow.pytorch.log_model``, which in MLflow 3
saves it with ``torch.export`` (no pickled code; the batch dimension is dynamic
because the input example has several rows), so a search can use it as ``teacher:
{name: mlflow, params: {uri: models:/NAME@ALIAS}}``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdforge.data import Inputs
from kdforge.errors import TrackingError, first_line
from kdforge.tracking.store import registry_at

# MLflow (~1.5 s to import), onnx and onnxruntime are imported inside the functions
# that use them: the Ray Serve replicas and a search import this module early.

__all__ = [
    "OnnxModelFile",
    "download_student_checkpoint",
    "drop_interrupted_versions",
    "fetch_onnx_model",
    "label_version",
    "log_registered_teacher",
    "model_flavors",
    "register_onnx",
]


@dataclass(frozen=True)
class OnnxModelFile:
    """A registered ONNX model, read back into memory.

    Attributes:
        model_uri: The URI it was fetched from (e.g. ``models:/NAME@champion``).
        onnx_bytes: The serialized ONNX graph.
        input_name: Name of the graph's (single) input.
        output_name: Name of the graph's first output.
        input_shape: Signature shape of the input, ``-1`` for the batch axis.
        input_dtype: numpy dtype name of the input (e.g. ``float32``).
    """

    model_uri: str
    onnx_bytes: bytes
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    input_dtype: str


def register_onnx(
    onnx_path: str | Path,
    *,
    name: str,
    example: np.ndarray,
    alias: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Log an ONNX file as a new version of registered model ``name``.

    Must be called with the MLflow tracking URI already set; logs into the active run
    (or a new one). The signature is inferred from ``example`` and the model's own
    output on it.

    Args:
        onnx_path: The ``.onnx`` file.
        name: Registered model name (created if missing).
        example: A small input batch (also stored as the input example).
        alias: Registry alias to point at the new version (e.g. ``champion``).
        tags: Model-version tags.

    Returns:
        The new version number, as a string.
    """
    import mlflow
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    prediction = session.run(None, {input_name: example})[0]
    with registry_at():  # register where the run logs
        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="student",
            signature=infer_signature(example, prediction),
            input_example=example,
            registered_model_name=name,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
        )
        version = str(info.registered_model_version)
        label_version(name, version, tags, alias)
    return version


def label_version(name: str, version: str, tags: dict[str, str] | None, alias: str | None) -> None:
    """Tag a new model version and point ``alias`` at it (MLflow's current registry)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    if alias:
        client.set_registered_model_alias(name, alias, version)


def drop_interrupted_versions(name: str) -> list[str]:
    """Delete the versions of ``name`` the active run registered before (a killed driver).

    A search registers one version per parent run; a version from the same run found
    before registering comes from a registration a kill interrupted (its tags, alias
    or summary never written). The resumed search registers anew, so no orphan stays.

    Returns:
        The deleted version numbers.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    active = mlflow.active_run()
    if active is None:
        return []
    client = MlflowClient()
    try:
        versions = client.search_model_versions(
            f"name = '{name}' and run_id = '{active.info.run_id}'"
        )
    except MlflowException:  # no such model yet
        return []
    dropped = []
    for version in versions:
        client.delete_model_version(name, str(version.version))
        dropped.append(str(version.version))
    return dropped


def fetch_onnx_model(model_uri: str, tracking_uri: str | None = None) -> OnnxModelFile:
    """Download a logged ONNX model and read its graph and input signature.

    Args:
        model_uri: ``models:/NAME@alias``, ``models:/NAME/VERSION``, ``runs:/...`` or a
            local MLflow model folder.
        tracking_uri: Where the registry lives (default: MLflow's current URI).

    Raises:
        TrackingError: the model cannot be found or is not an ONNX-flavoured model.
    """
    import mlflow
    from mlflow.models import Model

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="kdforge-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except Exception as exc:
            raise TrackingError(
                f"cannot fetch model {model_uri} from {mlflow.get_tracking_uri()}: "
                f"{first_line(exc)}",
                hint="check the name/alias with the MLflow UI, or pass --tracking-uri "
                "pointing at the store the search used",
            ) from None
        meta = Model.load(str(local / "MLmodel"))
        flavor = meta.flavors.get("onnx")
        if flavor is None:
            raise TrackingError(
                f"model {model_uri} has no ONNX flavour (flavours: {', '.join(meta.flavors)})",
                hint="register the student with kdforge's onnx exporter (export.exporter: onnx)",
            )
        onnx_bytes = (local / str(flavor.get("data", "model.onnx"))).read_bytes()
    shape, dtype = _signature_input(meta)
    input_name, output_name = _graph_names(onnx_bytes)
    return OnnxModelFile(
        model_uri=model_uri,
        onnx_bytes=onnx_bytes,
        input_name=input_name,
        output_name=output_name,
        input_shape=shape,
        input_dtype=dtype,
    )


def flavor_settings(model_uri: str, tracking_uri: str) -> dict[str, dict[str, Any]] | None:
    """A logged model's flavours with their settings, from its ``MLmodel`` file only
    (nothing else is downloaded or read); None when the model cannot be found.

    Args:
        model_uri: ``models:/...`` or ``runs:/...``.
        tracking_uri: Where the registry lives.
    """
    import mlflow
    from mlflow.models import get_model_info

    mlflow.set_tracking_uri(tracking_uri)
    try:
        with registry_at(tracking_uri):
            return {k: dict(v or {}) for k, v in get_model_info(model_uri).flavors.items()}
    except Exception:  # not found, unreachable: the callers answer "not that kind"
        return None


def model_flavors(model_uri: str, tracking_uri: str) -> tuple[set[str], str | None]:
    """A logged model's flavours and its pyfunc loader module, from its MLmodel file only.

    Nothing but the small ``MLmodel`` YAML file is downloaded or read, so this is safe
    to call on a model that may hold pickled code.

    Args:
        model_uri: ``models:/...`` or ``runs:/...``.
        tracking_uri: Where the registry lives.

    Raises:
        TrackingError: the model cannot be found.
    """
    import mlflow
    from mlflow.models import get_model_info

    mlflow.set_tracking_uri(tracking_uri)
    try:
        with registry_at(tracking_uri):
            info = get_model_info(model_uri)
    except Exception as exc:
        raise TrackingError(
            f"cannot fetch model {model_uri} from {tracking_uri}: {first_line(exc)}",
            hint="check the name/alias with the MLflow UI, or pass --tracking-uri "
            "pointing at the store the search used",
        ) from None
    flavors = dict(info.flavors)
    loader = (flavors.get("python_function") or {}).get("loader_module")
    return set(flavors), None if loader is None else str(loader)


def _signature_input(meta: Any) -> tuple[tuple[int, ...], str]:
    """Input shape and dtype from the MLflow signature (a single tensor spec)."""
    signature = meta.signature
    if signature is None or not signature.inputs.inputs:
        raise TrackingError(
            "the model has no input signature, so requests cannot be checked",
            hint="log it with a signature (kdforge's registry step always does)",
        )
    spec = signature.inputs.inputs[0]
    shape = getattr(spec, "shape", None)
    if shape is None:
        raise TrackingError("the model's signature is not a tensor signature")
    return tuple(int(d) for d in shape), str(np.dtype(spec.type))


def _graph_names(onnx_bytes: bytes) -> tuple[str, str]:
    import onnx

    graph = onnx.load_model_from_string(onnx_bytes).graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or not graph.output:
        raise TrackingError(
            f"the ONNX graph has inputs {inputs}; kdforge serves single-input models"
        )
    return inputs[0], graph.output[0].name


def log_registered_teacher(
    model: nn.Module,
    train_x: Inputs,
    name: str,
    alias: str,
    tracking_uri: str,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Log ``model`` in the active MLflow run, register it and set ``alias``.

    Args:
        model: The trained teacher (put in eval mode here).
        train_x: Training inputs; a few rows become the input example and signature.
        name: Registered model name.
        alias: Alias to point at the new version.
        tracking_uri: The tracking/registry store.
        tags: Model-version tags (e.g. ``kdforge.split``, the rows it trained on).

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
        with registry_at(tracking_uri):  # register where the run logs
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
        for key, value in (tags or {}).items():
            client.set_model_version_tag(name, str(version), key, value)
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


def download_student_checkpoint(uri: str, name: str, *, tracking_uri: str | None = None) -> Path:
    """Download file ``name`` logged by the search run behind a model or run URI.

    Args:
        uri: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (the run that registered
            the version) or ``runs:/RUN_ID``.
        name: The artifact at the run's root (``student.pt``).
        tracking_uri: Where the registry lives (default: MLflow's current URI).

    Returns:
        The local path of the downloaded file (in a new temporary folder).

    Raises:
        TrackingError: the URI does not resolve, or its run logged no such file.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    try:
        run_id = _run_of(client, uri)
        folder = tempfile.mkdtemp(prefix="kdforge-student-")
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, dst_path=folder
        )
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(
            f"cannot fetch {name} for {uri} from {mlflow.get_tracking_uri()}: {first_line(exc)}",
            hint="check the URI and the tracking URI; searches log student.pt to their parent "
            "run, which registers the model version",
        ) from None
    return Path(local)


def _run_of(client: Any, uri: str) -> str:
    """The run id behind ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID``."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").strip("/").split("/")[0]
    if not uri.startswith("models:/"):
        raise TrackingError(
            f"{uri} is not a model or run URI",
            hint="use models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID",
        )
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        model, alias = rest.split("@", 1)
        version = client.get_model_version_by_alias(model, alias)
    else:
        model, _, number = rest.partition("/")
        version = client.get_model_version(model, number)
    if not version.run_id:
        raise TrackingError(f"{uri}: the model version records no run")
    return str(version.run_id)
