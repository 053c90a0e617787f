"""End to end: a causal language model distilled, registered and served as text.

Everything is built inside the test, nothing is downloaded: a tiny GPT-2 teacher is
trained on Python's own docstrings (``kdforge.testing.lm``); the ``text_corpus``
dataset cuts the same kind of text into token blocks with the teacher's tokenizer;
a real search (Ray Tune, Optuna, MLflow in SQLite) distils it into ``hf_lm`` students
of the teacher's family, pruned from the teacher, with ``lm_kd`` (the task's default
loss) reading a per-position top-k teacher cache; the scratch baseline trains the same
architecture from random weights on the same token budget. The search registers the
student in the ``transformers`` flavour, and ``kdforge serve`` of the search folder
answers a prompt over HTTP with the text the registered student generates greedily.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kdforge.config import SearchConfig
from kdforge.search.driver import run_search
from tests.deploy.conftest import free_port, kdforge_cli, post, start_server, stop_server

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

PACKAGES = ("json", "csv", "string", "textwrap", "logging")
PROMPT = "return the value of the"


@pytest.fixture(scope="module")
def search(ray_session, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-trial causal-LM search over pruned students of a tiny GPT-2 teacher."""
    from kdforge.testing.lm import python_docstrings, tiny_lm

    root = tmp_path_factory.mktemp("lm-e2e")
    texts = python_docstrings(600, packages=PACKAGES)
    teacher = tiny_lm(root / "teacher", "causal", texts, hidden=48, layers=2, heads=4, steps=80)
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
                "mode": "causal",
                "max_blocks": 400,
            },
        },
        "task": {"name": "language_modeling", "params": {"mode": "causal"}},
        "teacher": {"name": "huggingface", "params": {"path": str(teacher), "task": "causal_lm"}},
        "student": {
            "name": "hf_lm",
            "params": {"init": "prune", "width_fractions": [0.5], "max_layers": 1},
        },
        "teacher_cache": {"top_k": 16},
        "search": {"num_trials": 2, "epochs": 2, "grace_period": 2},
        "baseline": {"enabled": True, "seeds": 1},
        "export": {"registered_model_name": "lm-e2e"},
        "tracking": {"uri": uri},
    }
    lines: list[str] = []
    result = run_search(SearchConfig.model_validate(raw), emit=lines.append)
    return {"result": result, "lines": lines, "uri": uri, "teacher": teacher}


def test_the_search_distils_pruned_students_and_measures_the_gain(search) -> None:
    result, printed = search["result"], "\n".join(search["lines"])
    finished = [r for r in result.rows if r.status == "finished"]
    assert finished, printed
    # Validation perplexity of a 2-epoch student: finite and far below a uniform guess.
    vocab = result.summary.get("num_classes") or 2000
    assert all(1.0 < r.val_acc < vocab for r in finished)
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["metric"] == "perplexity" and summary["metric_higher_is_better"] is False
    assert summary["student_params"] * 2 < summary["teacher_params"]
    # The baseline: the same architecture from scratch, read in perplexity, not "points".
    assert "scratch_test_perplexity_mean" in summary, sorted(summary)
    assert "perplexity (improvement; lower perplexity is better)" in printed
    assert "(k=16 x" in printed  # the top-k cache's size, printed before it was built


def test_the_student_comes_back_as_a_registered_hugging_face_model(search) -> None:
    result = search["result"]
    summary = json.loads((result.search_dir / "summary.json").read_text())
    folder = Path(summary["hf_folder"])
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert summary["text_model_uri"] == "models:/lm-e2e-text@champion"


@pytest.fixture(scope="module")
def served(search) -> Iterator[str]:
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


def test_serve_generates_the_registered_students_text(search, served) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = json.loads((search["result"].search_dir / "summary.json").read_text())["hf_folder"]
    status, answer = post(
        f"{served}/invocations",
        json.dumps({"inputs": [PROMPT], "params": {"max_new_tokens": 5}}),
    )
    assert status == 200, answer
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    encoded = tokenizer(PROMPT, return_tensors="pt")
    out = model.generate(**encoded, max_new_tokens=5, do_sample=False)
    expected = tokenizer.decode(out[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    text = json.dumps(answer)
    assert expected.strip() and expected.strip() in text, (expected, answer)
