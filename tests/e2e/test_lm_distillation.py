"""End to end: causal and masked language models distilled, registered and served.

Everything is built inside the test, nothing is downloaded: a tiny GPT-2 (causal) and a
tiny BERT (masked) teacher are trained on Python's own docstrings
(``kdforge.testing.lm``); the ``text_corpus`` dataset cuts the same kind of text into
token blocks with the teacher's tokenizer (BERT's masking for the masked one); a real
search (Ray Tune, Optuna, MLflow in SQLite) distils each into ``hf_lm`` students of the
teacher's family (GPT-2: width-pruned from the teacher; BERT: every other teacher layer,
as DistilBERT) with ``lm_kd`` (the task's default loss) reading a per-position top-k
teacher cache; the scratch baseline trains the same architecture from random weights on
the same token budget. The search registers the student in the ``transformers``
flavour; ``kdforge serve`` of the causal search's folder answers a prompt over HTTP with
the registered student's greedy continuation (tests/deploy/test_lm_serve.py serves a
masked student's fill-mask answers and ``mlflow models serve``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kdforge.config import SearchConfig
from kdforge.search.driver import run_search
from tests.deploy.conftest import free_port, kdforge_cli, post, start_server, stop_server

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

PACKAGES = ("json", "csv", "string", "textwrap", "logging")
PROMPT = "return the value of the"
STUDENTS = {
    "causal": {"init": "prune", "width_fractions": [0.5], "max_layers": 1},
    "masked": {"init": "layers", "layer_selection": "every_other", "max_layers": 1},
}


@pytest.fixture(scope="module", params=["causal", "masked"])
def search(request, ray_session, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-trial LM search over hf_lm students of a tiny teacher, started from it."""
    from kdforge.testing.lm import python_docstrings, tiny_lm

    mode = request.param
    root = tmp_path_factory.mktemp(f"lm-e2e-{mode}")
    texts = python_docstrings(600, packages=PACKAGES)
    teacher = tiny_lm(root / "teacher", mode, texts, hidden=48, layers=2, heads=4, steps=80)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    raw = {
        "name": "lm-e2e",
        "output_dir": str(root / "runs"),
        "dataset": {
            "name": "text_corpus",
            "params": {
                "source": "python_stdlib",
                "stdlib_packages": list(PACKAGES),
                "tokenizer": str(teacher),
                "block_size": 32,
                "mode": mode,
                "max_blocks": 400,
            },
        },
        "task": {"name": "language_modeling", "params": {"mode": mode}},
        "teacher": {
            "name": "huggingface",
            "params": {"path": str(teacher), "task": f"{mode}_lm"},
        },
        "student": {"name": "hf_lm", "params": STUDENTS[mode]},
        # masked: values stored as bfloat16 bit patterns (numpy has no bfloat16).
        "teacher_cache": {"top_k": 16, "dtype": "bfloat16" if mode == "masked" else "float16"},
        "search": {"num_trials": 2, "epochs": 2, "grace_period": 2},
        # The baseline and the served answer once (causal); tests/deploy/test_lm_serve.py
        # serves a masked student's fill-mask answers.
        "baseline": {"enabled": mode == "causal", "seeds": 1},
        "export": {"registered_model_name": f"lm-e2e-{mode}"},
        "tracking": {"uri": uri},
    }
    lines: list[str] = []
    result = run_search(SearchConfig.model_validate(raw), emit=lines.append)
    return {"result": result, "lines": lines, "uri": uri, "teacher": teacher, "mode": mode}


def test_the_search_distils_students_and_measures_the_gain(search) -> None:
    result, printed = search["result"], "\n".join(search["lines"])
    finished = [r for r in result.rows if r.status == "finished"]
    assert finished, printed
    # Validation perplexity of a 2-epoch student: finite and far below a uniform guess.
    vocab = result.summary.get("num_classes") or 2000
    assert all(1.0 < r.val_acc < vocab for r in finished)
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["metric"] == "perplexity" and summary["metric_higher_is_better"] is False
    assert summary["student_params"] < summary["teacher_params"]
    assert "(k=16 x" in printed  # the top-k cache's size, printed before it was built
    cache = result.search_dir.parent.parent / ".teacher-cache"
    (values,) = cache.glob("*/logits_train.values.npy")
    assert np.load(values).dtype == (np.uint16 if search["mode"] == "masked" else np.float16)
    if search["mode"] == "causal":
        # The same architecture from scratch, read in perplexity, not in "points".
        assert "scratch_test_perplexity_mean" in summary, sorted(summary)
        assert "perplexity (improvement; lower perplexity is better)" in printed


def test_the_student_comes_back_as_a_registered_hugging_face_model(search) -> None:
    result = search["result"]
    summary = json.loads((result.search_dir / "summary.json").read_text())
    folder = Path(summary["hf_folder"])
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert summary["text_model_uri"] == f"models:/lm-e2e-{search['mode']}-text@champion"


@pytest.fixture(scope="module")
def served(search) -> Iterator[str]:
    if search["mode"] != "causal":
        pytest.skip("tests/deploy/test_lm_serve.py serves a masked student")
    port = free_port()
    process = start_server(
        kdforge_cli("serve", str(search["result"].search_dir), "--port", str(port)),
        f"http://127.0.0.1:{port}/ping",
        timeout_s=180,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


def test_serve_answers_with_the_registered_students_output(search, served) -> None:
    folder = json.loads((search["result"].search_dir / "summary.json").read_text())["hf_folder"]
    body = {"inputs": [PROMPT], "params": {"max_new_tokens": 5}}
    expected = _greedy(folder, PROMPT, 5)
    status, answer = post(f"{served}/invocations", json.dumps(body))
    assert status == 200, answer
    assert expected and expected in json.dumps(answer), (expected, answer)


def _greedy(folder: str, prompt: str, new_tokens: int) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    encoded = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**encoded, max_new_tokens=new_tokens, do_sample=False)
    new = out[0, encoded["input_ids"].shape[1] :]
    return str(tokenizer.decode(new, skip_special_tokens=True)).strip()
