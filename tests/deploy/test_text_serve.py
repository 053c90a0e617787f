"""A text student registered with its tokenizer: raw text in, class names out, over HTTP.

The tokenizer is built here (word level, ``tokenizers``; nothing is downloaded) and the
student's weights are set by hand so each class word decides the class. The model is
registered as ``kdforge.tracking.text_model`` does for a text search, served by
``kdforge serve`` for real, and asked with plain strings.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.deploy.conftest import free_port, kdforge_cli, post, start_server, stop_server
from tests.plugins.datasets.builders import write_tokenizer

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

CLASSES = ("neg", "neutral", "pos")
WORDS = {"awful": 0, "fine": 1, "great": 2}
LENGTH = 8


class _BagOfWords(torch.nn.Module):
    """Mean of per-token class votes: a class word votes 5 for its class."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.votes = torch.nn.Embedding(len(tokenizer), len(CLASSES))
        with torch.no_grad():
            self.votes.weight.zero_()
            for word, label in WORDS.items():
                self.votes.weight[tokenizer.convert_tokens_to_ids(word), label] = 5.0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.votes(ids).mean(dim=1)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, object]:
    import mlflow
    from transformers import AutoTokenizer

    from kdforge.plugins.exporters.onnx import OnnxExporter
    from kdforge.tracking.text_model import register_text_model

    root = tmp_path_factory.mktemp("text-serve")
    texts = ["an awful film", "a fine film", "a great film", "the plot was fine and slow"]
    folder = write_tokenizer(root / "tokenizer", texts)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = _BagOfWords(tokenizer).eval()
    example = torch.as_tensor(
        tokenizer(texts, padding="max_length", max_length=LENGTH, return_tensors="np")["input_ids"]
    )
    exported = OnnxExporter().export(model, example, root / "student.onnx")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("text-serve")  # not an experiment id left by an earlier test
    with mlflow.start_run():
        version = register_text_model(
            exported.path, folder, LENGTH, CLASSES, "reviews-student-text", alias="champion"
        )
    assert version == "1"
    return uri, folder, tokenizer


def test_registered_model_carries_class_names_and_no_pickle(text_model) -> None:
    import mlflow

    uri, _, _ = text_model
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info("models:/reviews-student-text@champion")
    assert info.metadata["class_names"] == list(CLASSES) and info.metadata["max_length"] == LENGTH
    flavor = info.flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # models-from-code
    local = Path(mlflow.artifacts.download_artifacts("models:/reviews-student-text@champion"))
    assert not list(local.rglob("*.pkl")) and (local / "artifacts" / "tokenizer").is_dir()


def test_kdforge_serve_answers_raw_text_with_class_names(text_model) -> None:
    uri, _, _ = text_model
    port = free_port()
    argv = kdforge_cli("serve", "reviews-student-text", "--tracking-uri", uri, "--port", str(port))
    server = start_server(argv, f"http://127.0.0.1:{port}/ping", timeout_s=180)
    try:
        texts = ["what a great film", "an awful plot", "fine", "great great awful"]
        status, answer = post(f"http://127.0.0.1:{port}/invocations", json.dumps({"inputs": texts}))
        assert status == 200, answer
        labels = [row["label"] for row in answer["predictions"]]
        assert labels == ["pos", "neg", "neutral", "pos"]
        scores = np.array([row["score"] for row in answer["predictions"]])
        assert ((scores > 1 / 3) & (scores <= 1)).all()
        status, answer = post(f"http://127.0.0.1:{port}/invocations", b"not json")
        assert 400 <= status < 500 and server.poll() is None, answer
    finally:
        stop_server(server)


def test_serve_accepts_kdforge_text_model_but_not_other_code(text_model, tmp_path: Path) -> None:
    """Only kdforge's own three-line code file passes the no-pickle check of serve."""
    import mlflow

    from kdforge.tracking.text_model import is_kdforge_text_model

    uri, _, _ = text_model
    assert is_kdforge_text_model("models:/reviews-student-text@champion", uri)
    marker = tmp_path / "ran"
    code = tmp_path / "other_model.py"
    code.write_text(
        "from pathlib import Path\n"
        "from mlflow.models import set_model\n"
        "from mlflow.pyfunc import PythonModel\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "class M(PythonModel):\n"
        "    def predict(self, context, model_input):\n"
        "        return model_input\n"
        "set_model(M())\n"
    )
    mlflow.set_tracking_uri(uri)
    marker.unlink(missing_ok=True)  # logging imports the file once; serve must not
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="other", python_model=str(code), registered_model_name="other-code"
        )
    marker.unlink(missing_ok=True)
    assert not is_kdforge_text_model("models:/other-code/1", uri)
    done = subprocess.run(
        kdforge_cli("serve", "models:/other-code/1", "--tracking-uri", uri),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "not an ONNX model" in done.stderr + done.stdout
    assert not marker.exists()
