"""Teacher ``mlflow``: a PyTorch, ONNX or transformers model from the MLflow registry or a run.

``uri`` is ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN_ID/PATH``,
resolved against ``tracking_uri`` (default: ``MLFLOW_TRACKING_URI``, else kdforge's
``sqlite:///mlflow.db`` in the working directory). The model's files are downloaded to
a temporary folder and loaded by flavour:

* ``onnx`` (preferred by ``flavor: auto``): run with onnxruntime on the CPU; an ONNX
  graph holds no Python code;
* ``pytorch``: MLflow's PyTorch loader on a ``torch.export`` archive (``.pt2``,
  MLflow 3's default), with MLflow's pickle check forced on
  (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` while it loads: MLflow 3.17 defaults it
  to true). A pickled PyTorch model (``model.pth``) is refused before anything in it
  is read, unless the teacher sets ``trust_pickle: true`` (the one opt-in, warned);
* ``transformers`` (a model logged with ``mlflow.transformers.log_model``, e.g. a
  causal or masked language model): the flavour's saved folder (``model/``:
  ``config.json`` + safetensors weights; ``components/tokenizer/``) is loaded with
  the ``huggingface`` teacher's loader (``from_pretrained(local_files_only=True)``,
  offline, ``use_safetensors``): MLflow's own loader (a pipeline) is not called and no
  pickle is read. A flavour saved without weights (``save_pretrained=False``: a hub
  reference), with a PEFT adapter or with pickled weights only is refused. ``task``
  defaults to the flavour's (``text-generation`` -> ``causal_lm``, ``fill-mask`` ->
  ``masked_lm``, ...). The model and tokenizer are kept in one folder,
  :attr:`MlflowTeacher.tokenizer_path` (under the temporary directory, named by the
  files' hash), to give to the ``text_corpus`` dataset's ``tokenizer``.

``kdforge train-teacher`` registers its teacher this way when the teacher config sets
``registered_model_name``. The input shape and classes come from the model signature.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

import kdforge
from kdforge import resolve_tracking_uri
from kdforge.errors import CheckpointError, first_line
from kdforge.interfaces import ModelOutput, PluginParams, Teacher
from kdforge.plugins.teachers._loading import directory_sha256
from kdforge.plugins.teachers.huggingface import HuggingFaceParams, HuggingFaceTeacher

# MLflow (~1.5 s to import), onnx and onnxruntime are imported when the teacher loads:
# plugins load at every registry build, most searches use another teacher.

__all__ = ["MlflowParams", "MlflowTeacher"]

_WHERE = "teacher 'mlflow'"
_SCHEMES = ("models:/", "runs:/")
#: The transformers flavour's pipeline task -> the huggingface teacher's task.
_FLAVOUR_TASKS = {
    "text-generation": "causal_lm",
    "fill-mask": "masked_lm",
    "text-classification": "sequence_classification",
    "sentiment-analysis": "sequence_classification",
    "token-classification": "token_classification",
    "ner": "token_classification",
}


class MlflowParams(PluginParams):
    """Parameters of the ``mlflow`` teacher."""

    uri: str = Field(description="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH.")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking/registry URI (default: MLFLOW_TRACKING_URI or sqlite)."
    )
    flavor: Literal["auto", "pytorch", "onnx", "transformers"] = Field(
        "auto",
        description="Which saved flavour to load; 'auto' prefers onnx, then pytorch, "
        "then transformers.",
    )
    task: Literal[
        "auto", "sequence_classification", "token_classification", "causal_lm", "masked_lm"
    ] = Field(
        "auto",
        description="transformers flavour: the head to load (as the huggingface teacher's "
        "task); auto: from the flavour's task (text-generation: causal_lm, fill-mask: "
        "masked_lm, text-classification, token-classification).",
    )
    hidden_states: bool = Field(
        False,
        description="transformers flavour: expose hidden states as 'hidden_<i>' features "
        "(n, seq_len, hidden), as the huggingface teacher does.",
    )
    hidden_layers: list[int] | None = Field(
        None, description="transformers flavour: only these hidden states ([-1]: the last)."
    )
    trust_pickle: bool = Field(
        False,
        description="Load a pickled PyTorch model (runs any code it holds; only if trusted).",
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(_SCHEMES):
            raise ValueError(
                "expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH"
            )
        return value


class MlflowTeacher(Teacher):
    """A registered (or run-logged) PyTorch or ONNX model, loaded through MLflow."""

    name = "mlflow"
    Params = MlflowParams

    def load(self) -> None:
        """Download the model's files, hash them, and load the chosen flavour."""
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

        params = self.params
        assert isinstance(params, MlflowParams)
        tracking = resolve_tracking_uri(
            params.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        )
        folder = Path(tempfile.mkdtemp(prefix="kdforge-teacher-"))
        try:
            try:
                # models:/ URIs are resolved with the global registry URI, whatever
                # download_artifacts is given, so both are pointed at `tracking` here.
                with _mlflow_uris(mlflow, tracking):
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=params.uri,
                        dst_path=str(folder),
                        tracking_uri=tracking,
                        registry_uri=tracking,
                    )
                meta = Model.load(local)
            except (MlflowException, OSError) as exc:
                raise CheckpointError(
                    f"{_WHERE}: cannot fetch {params.uri} from {tracking}: {first_line(exc)}",
                    hint="check the name/alias/version (`mlflow models` UI or MlflowClient) "
                    "and teacher.params.tracking_uri",
                ) from None
            # MLflow writes registered_model_meta per download (it names the alias or
            # version used); the model is the same whichever URI reached it.
            self._sha = directory_sha256(Path(local), skip=("registered_model_meta",))
            # What split it trained on (kdforge.split of its version or run), so a search
            # on another split is refused rather than tested on the teacher's own rows.
            self.meta = _split_meta(tracking, params.uri)
            self._shape, self._classes = _signature_shapes(meta)
            flavor = self._choose_flavor(set(meta.flavors))
            self._flavor = flavor
            self._hf: HuggingFaceTeacher | None = None
            self._model: Any = None
            self._session: Any = None
            if flavor == "transformers":
                self._hf = self._load_transformers(Path(local), meta)
                self._model = self._hf.torch_module()
            elif flavor == "pytorch":
                self._model = self._load_pytorch(mlflow, MlflowException, Path(local), meta)
                self._session = None
            else:
                self._model = None
                self._session, self._onnx_params = _onnx_session(Path(local), meta)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _load_pytorch(self, mlflow: Any, error: type[Exception], local: Path, meta: Any) -> Any:
        """Load the pytorch flavour; a pickled model only with ``trust_pickle``."""
        params = self.params
        assert isinstance(params, MlflowParams)
        data = local / str(meta.flavors["pytorch"].get("model_data", "data"))
        pickled = (data / "model.pth").exists() or not (data / "model.pt2").exists()
        if pickled and not params.trust_pickle:
            raise CheckpointError(
                f"{_WHERE}: refused to load {params.uri}: its PyTorch model is pickled "
                "(not a torch.export .pt2 archive), and unpickling could run code; "
                "nothing in it has run",
                hint="log the teacher as ONNX (mlflow.onnx.log_model) or with MLflow 3's "
                "default torch.export format; only if you trust it, set "
                "teacher.params.trust_pickle: true",
            )
        if pickled:
            message = (
                f"{_WHERE}: trust_pickle is true: unpickling {params.uri}; "
                "this runs any code the model holds"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
        try:
            with _pickle_allowed(params.trust_pickle):
                # A .pt2 archive with MLflow's pickle switch off, or the user's opt-in.
                load = mlflow.pytorch.load_model  # opt-in: trust_pickle (or a .pt2)
                return load(str(local), map_location="cpu")
        except error as exc:
            raise CheckpointError(
                f"{_WHERE}: MLflow refused to load {params.uri}: {first_line(exc)}",
                hint="log the model as ONNX or with MLflow 3's default (torch.export) "
                "format; only if you trust it, set teacher.params.trust_pickle: true",
            ) from None
        except Exception as exc:  # errors of the unpickled (trusted) code
            raise CheckpointError(
                f"{_WHERE}: loading {params.uri} failed: {type(exc).__name__}: {first_line(exc)}"
            ) from None

    def _load_transformers(self, local: Path, meta: Any) -> HuggingFaceTeacher:
        """The transformers flavour's folder, loaded as a ``huggingface`` teacher."""
        params = self.params
        assert isinstance(params, MlflowParams)
        conf = dict(meta.flavors["transformers"])
        model_dir = local / str(conf.get("model_binary") or "model")
        if "peft_adaptor" in conf:
            raise CheckpointError(
                f"{_WHERE}: {params.uri} holds a PEFT adapter, which kdforge does not load",
                hint="merge the adapter into the model (merge_and_unload) and log that",
            )
        if not (model_dir / "config.json").is_file():
            raise CheckpointError(
                f"{_WHERE}: {params.uri} stores no model files (logged with "
                "save_pretrained=False: a hub reference); kdforge never downloads from the hub",
                hint="log the model with mlflow.transformers.log_model(..., save_pretrained=True)",
            )
        if not any(model_dir.glob("*.safetensors")):
            raise CheckpointError(
                f"{_WHERE}: {params.uri} has no safetensors weights in {model_dir.name}/ "
                "(pickled weights could run code); nothing in it has run",
                hint="save the model with safetensors (transformers' default) and log it again",
            )
        task: str = params.task
        if task == "auto":
            flavour_task = str(conf.get("task") or "")
            if flavour_task not in _FLAVOUR_TASKS:
                raise CheckpointError(
                    f"{_WHERE}: {params.uri} was logged for task {flavour_task!r}, "
                    "which kdforge does not map to a teacher head",
                    hint="set teacher.params.task: causal_lm, masked_lm, "
                    "sequence_classification or token_classification",
                )
            task = _FLAVOUR_TASKS[flavour_task]
        # One folder holding the model and its tokenizer, kept after the download is
        # removed: the dataset tokenizes with it (tokenizer_path), Ray copies reload it.
        folder = Path(tempfile.gettempdir()) / "kdforge-mlflow-teachers" / self._sha[:16]
        if not (folder / "config.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix="staging-", dir=folder.parent))
            shutil.copytree(model_dir, staging, dirs_exist_ok=True)
            tokenizer_dir = local / "components" / "tokenizer"
            if tokenizer_dir.is_dir():
                shutil.copytree(tokenizer_dir, staging, dirs_exist_ok=True)
            try:
                staging.rename(folder)
            except OSError:  # another process put the same files there first
                shutil.rmtree(staging, ignore_errors=True)
        teacher = HuggingFaceTeacher(
            HuggingFaceParams(
                path=str(folder),
                task=task,
                hidden_states=params.hidden_states,
                hidden_layers=params.hidden_layers,
            )
        )
        teacher.load()
        return teacher

    @property
    def tokenizer_path(self) -> str | None:
        """The tokenizer's folder (transformers flavour; None for the others)."""
        hf = getattr(self, "_hf", None)  # None before load()
        return None if hf is None else hf.tokenizer_path

    def _choose_flavor(self, flavors: set[str]) -> str:
        params = self.params
        assert isinstance(params, MlflowParams)
        wanted = ["onnx", "pytorch", "transformers"] if params.flavor == "auto" else [params.flavor]
        for flavor in wanted:
            if flavor in flavors:
                return flavor
        raise CheckpointError(
            f"{_WHERE}: {params.uri} has flavours {sorted(flavors)}, none of {wanted}",
            hint="log the teacher with mlflow.pytorch.log_model, mlflow.onnx.log_model "
            "or mlflow.transformers.log_model",
        )

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """Logits of the teacher for one batch (and features, transformers flavour)."""
        if self._hf is not None:
            return self._hf.predict(x)
        if self._session is None:
            return ModelOutput(logits=self._model(x).float())
        feed = {self._session.get_inputs()[0].name: _as_input(x, self._session)}
        return ModelOutput(logits=torch.from_numpy(np.asarray(self._session.run(None, feed)[0])))

    def fingerprint(self) -> str:
        """SHA-256 of the model's files (another version or alias target differs)."""
        return self._sha

    def num_parameters(self) -> int:
        """Parameters of the PyTorch model, or elements of the ONNX initialisers."""
        if self._model is not None:
            return sum(p.numel() for p in self._model.parameters())
        return self._onnx_params

    def expected_input_shape(self) -> tuple[int, ...] | None:
        """Per-example input shape from the model signature, if it has one."""
        if self._hf is not None:
            return None  # the signature's inputs are strings; any sequence length
        return self._shape

    def expected_input_dtype(self) -> str | None:
        """``"int64"`` token ids for the transformers flavour (None: unknown)."""
        return "int64" if self._hf is not None else None

    def expected_num_classes(self) -> int | None:
        """Classes from the signature's output shape, or the transformers model's."""
        if self._hf is not None:
            return self._hf.expected_num_classes()
        return self._classes

    def torch_module(self) -> torch.nn.Module | None:
        """The PyTorch model (None for ONNX)."""
        return getattr(self, "_model", None)

    @property
    def flavor(self) -> str:
        """The loaded flavour: ``pytorch``, ``onnx`` or ``transformers``."""
        return self._flavor

    def __getstate__(self) -> dict[str, Any]:
        # An onnxruntime session does not pickle; copies reload from the registry.
        state = dict(self.__dict__)
        state.pop("_session", None)
        return state


@contextmanager
def _pickle_allowed(allowed: bool) -> Iterator[None]:
    """Set MLflow's pickle switch for one load, then restore it.

    MLflow 3.17 defaults ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` to true; kdforge sets it
    to false unless the user opted in, so MLflow also checks a .pt2 archive's records.
    """
    key = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
    before = os.environ.get(key)
    os.environ[key] = "true" if allowed else "false"  # opt-in: trust_pickle
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


@contextmanager
def _mlflow_uris(mlflow: Any, uri: str) -> Iterator[None]:
    """Point MLflow's global tracking and registry URIs at ``uri``, then restore them.

    ``set_registry_uri`` also exports ``MLFLOW_REGISTRY_URI`` to child processes, so
    the registry is restored to "follow the tracking URI" unless one was set before.
    """
    tracking, registry = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking)
        if registry:
            mlflow.set_registry_uri(registry)
        else:
            mlflow.set_registry_uri(None)
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


def _split_meta(tracking: str, uri: str) -> dict[str, Any] | None:
    """``{"dataset", "split"}`` from the ``kdforge.split`` tag of ``uri``'s version or run.

    kdforge's ``train-teacher`` tags both; a model registered by other means has no tag,
    and its split cannot be checked (None).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    try:
        if uri.startswith("models:/"):
            ref = uri[len("models:/") :]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                tags = client.get_model_version_by_alias(name, alias).tags
            else:
                name, _, version = ref.partition("/")
                tags = client.get_model_version(name, version.split("/")[0]).tags
        else:
            tags = client.get_run(uri[len("runs:/") :].split("/")[0]).data.tags
        record = json.loads(tags.get("kdforge.split", ""))
    except Exception:  # no tag, not JSON, not found: nothing recorded to check against
        return None
    if not isinstance(record, dict) or "dataset" not in record:
        return None
    return {"dataset": record["dataset"], "split": record}


def _onnx_session(folder: Path, meta: Any) -> tuple[Any, int]:
    import onnx
    import onnxruntime as ort

    conf = meta.flavors["onnx"]
    file = folder / conf.get("data", "model.onnx")
    proto = onnx.load(str(file))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    # Floating-point initialisers are the weights; integer ones are shape constants.
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    weights = [t for t in proto.graph.initializer if t.data_type in floats]
    return session, sum(int(np.prod(t.dims)) for t in weights)


def _as_input(x: torch.Tensor, session: Any) -> np.ndarray:
    kind = session.get_inputs()[0].type
    array = x.detach().cpu().numpy()
    return array.astype(np.int64) if "int64" in kind else array.astype(np.float32)


def _signature_shapes(meta: Any) -> tuple[tuple[int, ...] | None, int | None]:
    signature = getattr(meta, "signature", None)
    if signature is None:
        return None, None
    shape: tuple[int, ...] | None = None
    classes: int | None = None
    inputs = signature.inputs.inputs if signature.inputs is not None else []
    if len(inputs) == 1 and getattr(inputs[0], "shape", None):
        dims = tuple(int(d) for d in inputs[0].shape[1:])
        shape = dims if all(d > 0 for d in dims) else None
    outputs = signature.outputs.inputs if signature.outputs is not None else []
    if len(outputs) == 1 and getattr(outputs[0], "shape", None):
        last = int(outputs[0].shape[-1])
        classes = last if last > 0 else None
    return shape, classes


@kdforge.hookimpl
def register_teachers(register: kdforge.Register) -> None:
    """Register the ``mlflow`` teacher."""
    register("mlflow", MlflowTeacher)
