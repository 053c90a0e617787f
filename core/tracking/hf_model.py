"""A language-model student in the MLflow registry, in the ``transformers`` flavour.

:func:`register_transformers_model` logs a Hugging Face model folder (written by
:func:`kdforge.export.hf_folder.save_hf_folder`) with ``mlflow.transformers.log_model``
as a pipeline of the student's task: ``text-generation`` (causal) or ``fill-mask``
(masked). The flavour stores the model with ``save_pretrained`` (``model.safetensors``)
and the tokenizer's JSON files; MLflow's loader (``mlflow.transformers._load_pyfunc``)
rebuilds a ``transformers.pipeline`` from them with ``from_pretrained``. No
cloudpickle and no ``python_model`` is involved, so ``mlflow models serve`` and
``kdforge serve`` answer from the weights alone.

Served, a causal student takes ``{"inputs": ["a prompt", ...], "params":
{"max_new_tokens": N}}`` and answers the generated continuation of each prompt
(greedy: ``do_sample`` is off in the logged ``model_config``, the prompt is not
repeated); a masked student takes texts with ``[MASK]`` and answers the top token.

:func:`is_safe_transformers_model` is what ``kdforge serve`` asks before serving a
``transformers``-flavoured model without ``--trust-pickle``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from kdforge.errors import TrackingError, first_line
from kdforge.tracking.registry import flavor_settings, label_version
from kdforge.tracking.store import registry_at

# MLflow (~1.5 s to import) and transformers are imported by the functions that use
# them: a search imports this module whatever its student; only LM students need them.

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "TASKS",
    "is_safe_transformers_model",
    "register_transformers_model",
]

#: Pipeline task of each language-modelling mode.
TASKS = {"causal": "text-generation", "masked": "fill-mask"}

#: Tokens a causal student generates when a request names no ``max_new_tokens``.
DEFAULT_MAX_NEW_TOKENS = 20

#: Files a safe ``transformers`` model may hold: weights as safetensors, everything else
#: plain text (JSON, YAML, the tokenizer's vocabulary and merges). Anything else
#: (``*.bin``, ``*.pt``, ``*.pkl``, ``*.py``) could run code when loaded.
_SAFE_SUFFIXES = (".safetensors", ".json", ".txt", ".yaml", ".yml", ".md", ".model")
_SAFE_NAMES = ("MLmodel", "LICENSE", "registered_model_meta")  # YAML, written by MLflow


def register_transformers_model(
    folder: str | Path,
    mode: str,
    name: str,
    *,
    examples: Sequence[str] | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    tags: dict[str, str] | None = None,
    alias: str | None = None,
) -> str:
    """Log a Hugging Face LM folder in the ``transformers`` flavour and register it.

    Must be called with the MLflow tracking URI set; logs into the active run (or a new
    one). Nothing is fetched from the Hugging Face Hub: the model card is written here
    and the model is loaded from the folder's absolute path, which is no Hub repository
    id, so MLflow's license look-up stops before any request.

    Args:
        folder: The model folder (config, safetensors, tokenizer).
        mode: ``causal`` (served as ``text-generation``) or ``masked`` (``fill-mask``).
        name: Registered model name (created if missing).
        examples: Input examples (texts; a masked example needs the mask token).
            Default: one built from the tokenizer.
        max_new_tokens: Default length of a generated continuation (a request's
            ``params.max_new_tokens`` overrides it).
        tags: Model-version tags.
        alias: Registry alias to point at the new version.

    Returns:
        The new version number, as a string.

    Raises:
        TrackingError: an unknown mode, or MLflow refused the model.
    """
    if mode not in TASKS:
        raise TrackingError(
            f"register_transformers_model: mode {mode!r} is not one of {sorted(TASKS)}",
            hint="pass the student's mode (HuggingFaceLMStudent.mode)",
        )
    import mlflow
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    folder = Path(folder).resolve()  # an absolute path is never mistaken for a Hub id
    loader = AutoModelForCausalLM if mode == "causal" else AutoModelForMaskedLM
    model = loader.from_pretrained(str(folder), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    texts = list(examples or _default_examples(tokenizer, mode))[:4]
    config: dict[str, Any] = {}
    example: Any = texts
    if mode == "causal":
        # Greedy and without the prompt: a served answer is the model's own continuation.
        config = {"do_sample": False, "return_full_text": False, "max_new_tokens": max_new_tokens}
        example = (texts, {"max_new_tokens": max_new_tokens})
    card = _Card(f"# {name}\n\nA {mode} language model distilled by kdforge.\n")
    try:
        with registry_at():  # register where the run logs
            info = mlflow.transformers.log_model(
                {"model": model, "tokenizer": tokenizer},
                name="student_hf",
                task=TASKS[mode],
                input_example=example,
                model_config=config or None,
                model_card=card,
                # Given, so MLflow does not load the model in a subprocess to infer them.
                pip_requirements=_requirements(),
                registered_model_name=name,
                metadata={"kdforge.lm_mode": mode},
            )
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(
            f"registering the {mode} language model {folder} as {name!r} failed: {first_line(exc)}",
            hint="check the tracking URI (a file store has no registry; use sqlite:///...)",
        ) from None
    version = str(info.registered_model_version)
    label_version(name, version, tags, alias)
    return version


@dataclass(frozen=True)
class _CardData:
    license: str = "other"

    def to_dict(self) -> dict[str, str]:
        return {"license": self.license, "library_name": "transformers"}


@dataclass(frozen=True)
class _Card:
    """The model card MLflow writes (``text``, ``data``: what it reads of a Hub
    ``ModelCard``); given, so that MLflow does not look for one on the Hub."""

    text: str
    data: _CardData = field(default_factory=_CardData)


def _requirements() -> list[str]:
    """The pinned packages the served pipeline needs (MLflow's own helper also wants
    torchvision, which a text model does not)."""
    pins = []
    for package in ("mlflow", "transformers", "tokenizers", "torch", "safetensors"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _default_examples(tokenizer: Any, mode: str) -> list[str]:
    words = [t for t in ("the", "a", "of", "is") if tokenizer.convert_tokens_to_ids(t) > 1]
    text = " ".join(words[:2] or ["the"])
    if mode == "masked":
        return [f"{text} {tokenizer.mask_token or '[MASK]'}"]
    return [text]


def is_safe_transformers_model(model_uri: str, tracking_uri: str) -> bool:
    """True when a ``transformers``-flavoured model loads without running pickled code.

    Reads the ``MLmodel`` file, lists the model's files and reads its JSON configs only
    (nothing is loaded or run). Safe means: MLflow's own ``mlflow.transformers`` pyfunc
    loader, weights stored in the artifact (not a Hub reference, no PEFT adaptor, no
    processor), no code folder, the model and its components classes of the installed
    ``transformers`` (MLflow loads any other with ``trust_remote_code=True``), every
    file safetensors or plain text (no ``pytorch_model.bin``, which ``torch.load``
    unpickles, and no ``.py``), and no ``auto_map`` in a config (remote code).

    Args:
        model_uri: ``models:/...`` or ``runs:/...``.
        tracking_uri: Where the registry lives.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    flavors = flavor_settings(model_uri, tracking_uri)
    if flavors is None:  # not found: check_servable's model_flavors already said so
        return False
    conf = flavors.get("transformers") or {}
    pyfunc = flavors.get("python_function") or {}
    if (
        not conf
        or pyfunc.get("loader_module") != "mlflow.transformers"
        or conf.get("code")
        or pyfunc.get("code")
        or any(
            key in conf
            for key in (
                "source_model_revision",  # weights on the Hub, fetched when loaded
                "local_base_model_path",  # weights outside the artifact
                "peft_adaptor",
                "processor_type",
                "tokenizer_revision",
            )
        )
    ):
        return False
    if not _transformers_classes(conf):
        return False
    try:
        with registry_at(tracking_uri):
            repo = get_artifact_repository(model_uri)
            files = _all_files(repo, "")
            if not files or not all(_safe_file(f) for f in files):
                return False
            with tempfile.TemporaryDirectory() as scratch:
                for path in (f for f in files if f.endswith("config.json")):
                    local = Path(repo.download_artifacts(path, dst_path=scratch))
                    if "auto_map" in json.loads(local.read_text()):
                        return False
    except Exception:  # unreadable: not servable without the opt-in
        return False
    return True


def _transformers_classes(conf: dict[str, Any]) -> bool:
    """Whether the model and each component are classes of the installed transformers.

    MLflow's loader falls back to ``trust_remote_code=True`` (code from the artifact)
    for a class that transformers lacks.
    """
    # transformers is imported here only: serving a transformers model needs it anyway.
    import transformers

    names = [conf.get("pipeline_model_type")]
    names += [conf.get(f"{component}_type") for component in conf.get("components") or []]
    return all(isinstance(n, str) and hasattr(transformers, n) for n in names)


def _all_files(repo: Any, path: str) -> list[str]:
    out: list[str] = []
    for entry in repo.list_artifacts(path or None):
        if entry.is_dir:
            out.extend(_all_files(repo, entry.path))
        else:
            out.append(entry.path)
    return out


def _safe_file(path: str) -> bool:
    name = Path(path).name
    return name in _SAFE_NAMES or name.endswith(_SAFE_SUFFIXES)
