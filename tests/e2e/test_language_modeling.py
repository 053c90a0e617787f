"""End to end: a masked language model distilled through real Ray, MLflow and ONNX.

Sequences come from a fixed Markov chain over 24 tokens; 15% of the positions are
replaced by a mask token and the targets hold the original tokens there (``-2``
elsewhere), as BERT's masked-LM data does. A 2-layer ``transformer`` teacher is trained
by ``train_teacher`` on an ``arrays`` file, then a 2-trial search distils it. Selection
is by validation perplexity, the first lower-is-better metric through the whole search.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdforge.cli import main
from kdforge.config import SearchConfig, TeacherConfig
from kdforge.search.driver import run_search
from kdforge.teacher.train_teacher import train_teacher

pytestmark = pytest.mark.slow

VOCAB, MASK, LENGTH = 24, 23, 12


def masked_corpus(path: Path, rows: int = 900, seed: int = 0) -> None:
    """Markov-chain token rows with 15% masked; targets the original masked tokens."""
    rng = np.random.default_rng(seed)
    # Each token has two likely successors: a model that reads the neighbours of a
    # masked position does far better than one guessing from frequencies.
    follow = rng.integers(0, MASK, size=(MASK, 2))
    tokens = np.empty((rows, LENGTH), dtype=np.int64)
    tokens[:, 0] = rng.integers(0, MASK, size=rows)
    for t in range(1, LENGTH):
        pick = rng.integers(0, 2, size=rows)
        tokens[:, t] = follow[tokens[:, t - 1], pick]
    masked = rng.random((rows, LENGTH)) < 0.15
    masked[~masked.any(axis=1), LENGTH // 2] = True  # every row predicts something
    x = np.where(masked, MASK, tokens)
    y = np.where(masked, tokens, -2)
    np.savez(path, x=x, y=y)


@pytest.fixture(scope="module")
def masked_lm(ray_session, tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("mlm")
    masked_corpus(tmp_path / "corpus.npz")
    dataset = {
        "name": "arrays",
        "params": {
            "path": str(tmp_path / "corpus.npz"),
            "task": "language_modeling",
            "num_classes": VOCAB,
        },
    }
    task = {"name": "language_modeling", "params": {"mode": "masked"}}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    teacher = train_teacher(
        TeacherConfig.model_validate(
            {
                "name": "mlm-teacher",
                "dataset": dataset,
                "task": task,
                "architecture": {
                    "name": "transformer",
                    "params": {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128, "dropout": 0.0},
                },
                "training": {"epochs": 12, "lr": 3e-3},
                "output": str(tmp_path / "teacher.pt"),
                "tracking": {"uri": uri},
            }
        ),
        emit=lambda _: None,
    )
    raw = {
        "name": "mlm",
        "output_dir": str(tmp_path / "runs"),
        "dataset": dataset,
        "task": task,
        "teacher": {"name": "checkpoint", "params": {"path": str(tmp_path / "teacher.pt")}},
        "student": {
            "name": "transformer",
            "params": {"max_layers": 1, "hidden_sizes": [16, 32], "heads": [2], "max_ffn": 64},
        },
        "search": {"num_trials": 2, "epochs": 3, "grace_period": 2},
        "baseline": {"enabled": False},
        "tracking": {"uri": uri},
        "export": {"registered_model_name": "mlm-student"},
    }
    lines: list[str] = []
    result = run_search(SearchConfig.model_validate(raw), emit=lines.append)
    return result, teacher, raw, lines, tmp_path


def test_masked_lm_is_selected_by_perplexity_lower_is_better(masked_lm) -> None:
    result, teacher, _, lines, _ = masked_lm
    # The teacher learned the chain: far below a uniform guess over the vocabulary.
    assert teacher["val_perplexity"] < 0.5 * VOCAB
    header = (result.search_dir / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "val_perplexity" in header and "test_perplexity" in header
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["metric"] == "perplexity" and summary["metric_higher_is_better"] is False
    finished = [r for r in result.rows if r.status == "finished"]
    # The chosen student has the lowest validation perplexity, not the highest.
    assert result.best.val_acc == min(r.val_acc for r in finished)
    assert summary["student_val_perplexity"] == pytest.approx(result.best.val_acc)
    assert 1.0 < summary["student_test_perplexity"] < VOCAB
    printed = "\n".join(lines)
    assert "teacher: test_perplexity=" in printed and "best=" in printed


def test_masked_lm_student_exports_per_position_vocabulary_logits(masked_lm) -> None:
    import onnxruntime as ort

    result, _, _, _, tmp_path = masked_lm
    summary = json.loads((result.search_dir / "summary.json").read_text())
    x = np.load(tmp_path / "corpus.npz")["x"][:5]
    session = ort.InferenceSession(summary["export_path"], providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert logits.shape == (5, LENGTH, VOCAB)
    assert summary["export_max_abs_diff"] < 1e-3


def test_causal_mode_refuses_a_student_that_sees_later_positions(
    masked_lm, tmp_path: Path, capsys
) -> None:
    _, _, raw, _, _ = masked_lm
    rng = np.random.default_rng(1)
    x = rng.integers(0, VOCAB, size=(60, LENGTH))
    y = np.concatenate([x[:, 1:], np.full((60, 1), -2)], axis=1)  # the next token
    np.savez(tmp_path / "causal.npz", x=x, y=y)
    config = {
        **raw,
        "output_dir": str(tmp_path / "runs"),
        "dataset": {
            "name": "arrays",
            "params": {"path": str(tmp_path / "causal.npz"), "task": "language_modeling"},
        },
        "task": {"name": "language_modeling", "params": {"mode": "causal"}},
    }
    path = tmp_path / "causal.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert "predicts the next token" in err and "'transformer'" in err
    assert "Traceback" not in err
    # Targets that are not the next tokens are refused in causal mode, naming the split.
    np.savez(tmp_path / "causal.npz", x=x, y=x)
    assert main(["search", str(path)]) == 2
    assert "targets are not the next input tokens" in capsys.readouterr().err
