"""A registered text student that takes raw text and answers with class names.

A token-id student alone needs its caller to tokenize exactly as the data did (same
tokenizer, padded and truncated to the same length) and to know the class order.
:func:`register_text_model` logs it as an MLflow pyfunc model instead: the ONNX file,
the tokenizer folder and ``text_model.json`` (length, class names, input name) as
artifacts, and :class:`TextClassifier` as the model. The model is logged *from code*
(MLflow's models-from-code: a three-line file naming that class), so
loading it unpickles nothing; the tokenizer is read from its saved files with
``transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)``.

Served (``kdforge serve NAME``), it takes ``{"inputs": ["a text", ...]}`` (or
``dataframe_records`` with a ``text`` field) and answers one
``{"label": CLASS NAME, "score": probability}`` per text.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kdforge.tracking.registry import flavor_settings, label_version
from kdforge.tracking.store import registry_at

# MLflow (~1.5 s to import), onnx and transformers are imported by the function that
# uses them: a search imports this module whatever its data; only text students need it.

__all__ = ["SETTINGS_FILE", "is_kdforge_text_model", "register_text_model"]

#: The artifact holding the tokenization settings and the class names.
SETTINGS_FILE = "text_model.json"

_CODE = """# Logged by kdforge (models-from-code): the model is this class, not a pickle.
from mlflow.models import set_model

from kdforge.tracking.text_pyfunc import TextClassifier

set_model(TextClassifier())
"""


#: MLflow's pyfunc loaders that, given ``model_code_path``, run that file and unpickle nothing.
_CODE_LOADERS = ("mlflow.pyfunc.loaders.code_model", "mlflow.pyfunc.model")


def register_text_model(
    onnx_path: Path,
    tokenizer_dir: str | Path,
    max_length: int,
    class_names: Sequence[str],
    name: str,
    *,
    examples: Sequence[str] = ("an example text",),
    tags: dict[str, str] | None = None,
    alias: str | None = None,
) -> str:
    """Log the student with its tokenizer as a raw-text pyfunc model and register it.

    Args:
        onnx_path: The exported student (token ids ``(n, max_length)`` -> logits).
        tokenizer_dir: The local tokenizer folder the data was tokenized with.
        max_length: The length the data was padded and truncated to.
        class_names: Class names in label order (label ``i`` is ``class_names[i]``).
        name: Registered model name.
        examples: Texts for the input example.
        tags: Model-version tags.
        alias: Registry alias to point at the new version.

    Returns:
        The new version number, as a string.
    """
    import mlflow
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from transformers import AutoTokenizer

    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        code = folder / "kdforge_text_model.py"
        code.write_text(_CODE)
        settings = folder / SETTINGS_FILE
        settings.write_text(
            json.dumps(
                {
                    "max_length": int(max_length),
                    "class_names": [str(c) for c in class_names],
                    "input_name": input_name,
                },
                indent=2,
            )
        )
        tokenizer = folder / "tokenizer"  # its files only, not a model folder's weights
        AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True).save_pretrained(
            str(tokenizer)
        )
        signature = ModelSignature(
            inputs=Schema([ColSpec("string")]),
            outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
        )
        with registry_at():  # register where the run logs
            info = mlflow.pyfunc.log_model(
                name="student",
                python_model=str(code),
                artifacts={
                    "onnx": str(onnx_path),
                    "tokenizer": str(tokenizer),
                    "settings": str(settings),
                },
                signature=signature,
                input_example=list(examples)[:4],
                metadata={
                    "class_names": [str(c) for c in class_names],
                    "max_length": int(max_length),
                },
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    label_version(name, version, tags, alias)
    return version


def is_kdforge_text_model(model_uri: str, tracking_uri: str) -> bool:
    """True when ``model_uri`` is a raw-text model that :func:`register_text_model` logged.

    Reads the ``MLmodel`` file and the model's code file only (both small text files;
    nothing is loaded or run): a pyfunc logged from code whose code is exactly kdforge's
    three lines. ``kdforge serve`` serves it without ``--trust-pickle``, since its code is
    kdforge's installed :class:`TextClassifier` and its artifacts hold no pickle.

    Args:
        model_uri: ``models:/...`` or ``runs:/...``.
        tracking_uri: Where the registry lives.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    flavors = flavor_settings(model_uri, tracking_uri)
    if flavors is None:  # not found: check_servable's model_flavors already said so
        return False
    conf = flavors.get("python_function") or {}
    code_path = conf.get("model_code_path")
    if not code_path or conf.get("loader_module") not in _CODE_LOADERS:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = get_artifact_repository(model_uri).download_artifacts(
                Path(str(code_path)).name, dst_path=scratch
            )
            return Path(local).read_text() == _CODE
        except Exception:  # no readable code file: not ours
            return False
