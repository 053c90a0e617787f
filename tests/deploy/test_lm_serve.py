"""Language-model students out the other end: HF folder, transformers flavour, HTTP.

A tiny GPT-2 (causal) and a tiny BERT (masked) are built and trained here on Python's
own docstrings (``kdforge.testing.lm``; nothing is downloaded), wrapped as the LM
spaces wrap their students (``HuggingFaceLMStudent``) and handed to the search's final
step (:func:`kdforge.search.finalize.export_and_register`) with a real SQLite MLflow
store. That step writes ``student_hf/``, exports and registers the ONNX graph and
registers ``<name>-text`` in the ``transformers`` flavour. The served answers must be
what ``transformers`` itself computes from the saved folder: greedy ``generate`` for
the causal student, the argmax token for the masked one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._hostile import write_hostile_pickle
from tests.deploy.conftest import free_port, kdforge_cli, post, start_server, stop_server

pytest.importorskip("transformers")

PROMPTS = ["the json module", "return the value of the"]
NEW_TOKENS = 6


@dataclass(frozen=True)
class Exported:
    """One LM student after the search's export step."""

    mode: str
    search_dir: Path
    tracking_uri: str
    name: str
    out: dict
    student: torch.nn.Module
    check_ids: torch.Tensor


def _export(root: Path, mode: str, texts: list[str], tracking_uri: str) -> Exported:
    import mlflow
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from kdforge.config import SearchConfig
    from kdforge.data import Split
    from kdforge.plugins.exporters.onnx import OnnxExporter
    from kdforge.search.finalize import export_and_register
    from kdforge.search_spaces.hf_lm_model import HuggingFaceLMStudent
    from kdforge.testing.lm import tiny_lm, token_blocks

    folder = tiny_lm(root / f"{mode}-trained", mode, texts, steps=40)
    loader = AutoModelForCausalLM if mode == "causal" else AutoModelForMaskedLM
    student = HuggingFaceLMStudent(
        loader.from_pretrained(str(folder)), mode, tokenizer_dir=folder, pad_token_id=0
    ).eval()
    ids = token_blocks(texts, folder, 16)[:24]
    name = f"lm-{mode}"
    config = SearchConfig.model_validate(
        {
            "name": name,
            "dataset": {"name": "digits"},  # not read: the export step gets its split
            "teacher": {"name": "checkpoint", "params": {"path": str(root / "t.pt")}},
            "student": {"name": "mlp"},
            "tracking": {"uri": tracking_uri},
            "export": {"registered_model_name": name},
        }
    )
    search_dir = root / name
    search_dir.mkdir()
    summary = {
        "teacher_test_acc": 0.5,
        "student_test_acc": 0.4,
        "compression_ratio": 1.0,
        "student_params": 1,
        "teacher_params": 1,
    }
    with mlflow.start_run(run_name=name):
        out = export_and_register(
            config, OnnxExporter(), student, Split(x=ids, y=ids), summary, search_dir, print
        )
    (search_dir / "summary.json").write_text(
        json.dumps({**summary, **out, "tracking_uri": tracking_uri})
    )
    return Exported(mode, search_dir, tracking_uri, name, out, student, ids)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """A causal and a masked student, exported and registered (about 30 s)."""
    import mlflow

    from kdforge.testing.lm import python_docstrings

    root = tmp_path_factory.mktemp("lm-export")
    texts = python_docstrings(200, packages=("json", "email", "logging"))
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    # Artifacts beside the store, not in ./mlruns of whatever folder pytest runs from.
    mlflow.create_experiment("lm-export", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment("lm-export")
    return {mode: _export(root, mode, texts, tracking_uri) for mode in ("causal", "masked")}


def _greedy(folder: Path, prompt: str, new_tokens: int) -> str:
    """The continuation ``transformers`` generates greedily from the saved folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    encoded = tokenizer(prompt, return_tensors="pt")
    out = model.generate(
        input_ids=encoded["input_ids"],
        attention_mask=encoded["attention_mask"],
        max_new_tokens=new_tokens,
        do_sample=False,
    )
    new = out[0, encoded["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def _top_token(folder: Path, text: str) -> str:
    """The masked model's argmax token at the [MASK] position, from the saved folder."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(str(folder), local_files_only=True).eval()
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    where = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
    return str(tokenizer.decode([int(logits[where].argmax())])).strip()


@pytest.mark.parametrize("mode", ["causal", "masked"])
def test_student_saved_as_hugging_face_folder(exported, mode: str) -> None:
    """config + safetensors + tokenizer; reloaded, it computes the student's logits."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    lm = exported[mode]
    folder = Path(lm.out["hf_folder"])
    assert folder == lm.search_dir / "student_hf"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names, names
    assert not [n for n in names if n.endswith((".bin", ".pkl", ".pt", ".py"))]
    loader = AutoModelForCausalLM if mode == "causal" else AutoModelForMaskedLM
    reloaded = loader.from_pretrained(str(folder), local_files_only=True).eval()
    ids = lm.check_ids[:4]
    with torch.no_grad():
        expected = lm.student(ids)
        got = reloaded(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["causal", "masked"])
def test_registered_in_transformers_flavour_under_the_alias(exported, mode: str) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from kdforge.tracking.hf_model import is_safe_transformers_model

    lm = exported[mode]
    assert lm.out["text_model_uri"] == f"models:/{lm.name}-text@champion"
    mlflow.set_tracking_uri(lm.tracking_uri)
    info = mlflow.models.get_model_info(lm.out["text_model_uri"])
    task = {"causal": "text-generation", "masked": "fill-mask"}[mode]
    assert info.flavors["transformers"]["task"] == task
    assert info.flavors["python_function"]["loader_module"] == "mlflow.transformers"
    client = MlflowClient(lm.tracking_uri)
    version = client.get_model_version_by_alias(f"{lm.name}-text", "champion")
    assert version.tags["kdforge.lm_mode"] == mode
    assert version.tags["onnx_version"] == lm.out["registered_model_version"]
    local = Path(mlflow.artifacts.download_artifacts(lm.out["text_model_uri"]))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert not [p for p in files if p.suffix in (".bin", ".pkl", ".pt", ".py")]
    assert is_safe_transformers_model(lm.out["text_model_uri"], lm.tracking_uri)


@pytest.mark.parametrize("mode", ["causal", "masked"])
def test_onnx_student_registered_with_dynamic_batch_and_sequence(exported, mode: str) -> None:
    """The ONNX version (ids -> logits) is @champion too, and any (n, T) runs at parity."""
    import onnxruntime as ort

    from kdforge.tracking.registry import fetch_onnx_model

    lm = exported[mode]
    assert lm.out["model_uri"] == f"models:/{lm.name}@champion"
    assert lm.out["export_max_abs_diff"] < 1e-4
    model = fetch_onnx_model(lm.out["model_uri"], lm.tracking_uri)
    session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
    for ids in (lm.check_ids[:3, :5], lm.check_ids[:7]):
        got = session.run(None, {model.input_name: ids.numpy()})[0]
        with torch.no_grad():
            expected = lm.student(ids).numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_serve_refuses_transformers_model_with_pickled_weights(exported, tmp_path: Path) -> None:
    """A transformers model holding a pickle (a hostile pytorch_model.bin) is not served."""
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kdforge.tracking.hf_model import is_safe_transformers_model

    lm = exported["causal"]
    hf = lm.out["hf_folder"]
    saved = tmp_path / "with-bin"
    mlflow.set_tracking_uri(lm.tracking_uri)
    mlflow.transformers.save_model(
        {
            "model": AutoModelForCausalLM.from_pretrained(hf),
            "tokenizer": AutoTokenizer.from_pretrained(hf),
        },
        str(saved),
        task="text-generation",
        pip_requirements=["transformers"],
    )
    marker = tmp_path / "PWNED"
    write_hostile_pickle(saved / "model" / "pytorch_model.bin", marker)
    mlflow.register_model(saved.as_uri(), "pickled")
    assert not is_safe_transformers_model("models:/pickled/1", lm.tracking_uri)
    done = subprocess.run(
        kdforge_cli("serve", "models:/pickled/1", "--tracking-uri", lm.tracking_uri),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "not an ONNX model" in done.stderr + done.stdout
    assert not marker.exists()


@pytest.fixture(scope="module")
def servers(exported) -> Iterator[dict[str, str]]:
    """``kdforge serve`` of each student and ``mlflow models serve`` of the causal one.

    Started side by side (each spends its start-up importing MLflow and transformers),
    stopped after the module. Returns name -> base URL.
    """
    causal, masked = exported["causal"], exported["masked"]
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    ports = {name: free_port() for name in ("causal", "masked", "mlflow")}
    commands = {
        # The search folder: serve picks its <name>-text version from summary.json.
        "causal": (
            kdforge_cli("serve", str(causal.search_dir), "--port", str(ports["causal"])),
            None,
        ),
        # A registered name: models:/<name>@champion in the given store.
        "masked": (
            kdforge_cli(
                "serve", f"{masked.name}-text", "--tracking-uri", masked.tracking_uri,
                "--port", str(ports["masked"]),
            ),
            None,
        ),
        "mlflow": (
            [str(mlflow_cli), "models", "serve", "-m", causal.out["text_model_uri"],
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports["mlflow"])],
            # mlflow runs `uvicorn` by name: the venv's bin goes first on PATH.
            {
                "MLFLOW_TRACKING_URI": causal.tracking_uri,
                "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            },
        ),
    }  # fmt: skip
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {
            name: pool.submit(start_server, argv, f"{urls[name]}/ping", 240, env)
            for name, (argv, env) in commands.items()
        }
        started = {}
        errors = []
        for name, future in futures.items():
            try:
                started[name] = future.result()
            except RuntimeError as exc:
                errors.append(f"{name}: {exc}")
    try:
        assert not errors, errors
        yield urls
    finally:
        for process in started.values():
            stop_server(process)


@pytest.mark.slow
def test_kdforge_serve_generates_the_students_greedy_text(exported, servers) -> None:
    body = {"inputs": PROMPTS, "params": {"max_new_tokens": NEW_TOKENS}}
    status, answer = post(f"{servers['causal']}/invocations", json.dumps(body))
    assert status == 200, answer
    folder = exported["causal"].search_dir / "student_hf"
    expected = [_greedy(folder, prompt, NEW_TOKENS) for prompt in PROMPTS]
    assert [text.strip() for text in answer["predictions"]] == expected
    assert all(expected), "the tiny student generated only special tokens"


@pytest.mark.slow
def test_kdforge_serve_answers_fill_mask_with_the_argmax_token(exported, servers) -> None:
    texts = ["the [MASK] module", "return the [MASK] of the object"]
    status, answer = post(f"{servers['masked']}/invocations", json.dumps({"inputs": texts}))
    assert status == 200, answer
    folder = exported["masked"].search_dir / "student_hf"
    assert [t.strip() for t in answer["predictions"]] == [_top_token(folder, t) for t in texts]


@pytest.mark.slow
def test_mlflow_models_serve_generates_the_students_text(exported, servers) -> None:
    """``mlflow models serve -m models:/NAME-text@champion --env-manager local``."""
    body = {"inputs": PROMPTS[:1], "params": {"max_new_tokens": NEW_TOKENS}}
    status, answer = post(f"{servers['mlflow']}/invocations", json.dumps(body))
    assert status == 200, answer
    expected = _greedy(exported["causal"].search_dir / "student_hf", PROMPTS[0], NEW_TOKENS)
    assert [text.strip() for text in answer["predictions"]] == [expected]


def test_onnx_refusal_still_registers_the_transformers_model(exported, tmp_path: Path) -> None:
    """An exporter that cannot export the LM: the HF folder is registered all the same."""
    import mlflow

    from kdforge.config import SearchConfig
    from kdforge.data import Split
    from kdforge.errors import ExportError
    from kdforge.interfaces import Exporter
    from kdforge.search.finalize import export_and_register

    class Refusing(Exporter):
        name = "refusing"
        suffix = ".onnx"

        def export(self, model, example, path):
            raise ExportError("ONNX export failed: this architecture has no ONNX form")

    lm = exported["causal"]
    config = SearchConfig.model_validate(
        {
            "name": "refused",
            "dataset": {"name": "digits"},
            "teacher": {"name": "checkpoint", "params": {"path": str(tmp_path / "t.pt")}},
            "student": {"name": "mlp"},
            "export": {"registered_model_name": "lm-refused"},
        }
    )
    summary = {k: 1.0 for k in ("teacher_test_acc", "student_test_acc", "compression_ratio")}
    summary |= {"student_params": 1, "teacher_params": 1}
    lines: list[str] = []
    mlflow.set_tracking_uri(lm.tracking_uri)
    with mlflow.start_run(run_name="refused"):
        out = export_and_register(
            config, Refusing(), lm.student, Split(x=lm.check_ids, y=lm.check_ids), summary,
            tmp_path, lines.append,
        )  # fmt: skip
    assert "no ONNX form" in out["onnx_refused"] and "model_uri" not in out
    assert out["text_model_uri"] == "models:/lm-refused-text@champion"
    assert any(line.startswith("no ONNX model: ONNX export failed") for line in lines)
    assert (tmp_path / "student_hf" / "model.safetensors").is_file()
