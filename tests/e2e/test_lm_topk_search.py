"""End to end: a masked LM distilled with lm_kd from a per-position top-k teacher cache.

The corpus, the teacher (a 2-layer ``transformer`` trained by ``train_teacher``) and the
search follow tests/e2e/test_language_modeling.py, smaller; the teacher's outputs are
cached as the 4 largest logits per position plus the log-sum-exp (bfloat16 values) and
the trials, in real Ray workers, read them sparse through the memory-mapped cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdforge.config import SearchConfig, TeacherConfig
from kdforge.search.driver import run_search
from kdforge.teacher.train_teacher import train_teacher
from tests.e2e.test_language_modeling import VOCAB, masked_corpus

pytestmark = pytest.mark.slow


def test_lm_kd_search_trains_from_a_top_k_cache(ray_session, tmp_path: Path) -> None:
    masked_corpus(tmp_path / "corpus.npz", rows=300)
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
    train_teacher(
        TeacherConfig.model_validate(
            {
                "name": "mlm-teacher",
                "dataset": dataset,
                "task": task,
                "architecture": {
                    "name": "transformer",
                    "params": {"layers": 1, "hidden": 32, "heads": 2, "ffn": 64, "dropout": 0.0},
                },
                "training": {"epochs": 2, "lr": 3e-3},
                "output": str(tmp_path / "teacher.pt"),
                "tracking": {"uri": uri},
            }
        ),
        emit=lambda _: None,
    )
    raw = {
        "name": "mlm-topk",
        "output_dir": str(tmp_path / "runs"),
        "dataset": dataset,
        "task": task,
        "teacher": {"name": "checkpoint", "params": {"path": str(tmp_path / "teacher.pt")}},
        "student": {
            "name": "transformer",
            "params": {"max_layers": 1, "hidden_sizes": [16], "heads": [2], "max_ffn": 32},
        },
        "loss": {"name": "lm_kd", "params": {"divergence": "gjsd"}},
        "teacher_cache": {"top_k": 4, "dtype": "bfloat16", "share": "memmap"},
        "search": {"num_trials": 2, "epochs": 2, "grace_period": 2},
        "baseline": {"enabled": False},
        "export": {"enabled": False},
        "tracking": {"uri": uri},
    }
    lines: list[str] = []
    result = run_search(SearchConfig.model_validate(raw), emit=lines.append)
    printed = "\n".join(lines)
    assert "teacher outputs: cache entry of about" in printed and "(k=4 x (2 + 4 index)" in printed
    entries = list((tmp_path / "runs" / ".teacher-cache").glob("*/logits_train.lse.npy"))
    assert len(entries) == 1
    assert np.load(entries[0].with_name("logits_train.values.npy")).dtype == np.uint16
    finished = [r for r in result.rows if r.status == "finished"]
    # Validation perplexity of briefly trained students: finite, not the failure value.
    assert finished and all(1.0 < r.val_acc < 3 * VOCAB for r in finished)
