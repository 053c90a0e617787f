"""Token tagging end to end: a tiny BERT tagger distilled into per-position transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugins.datasets import tagging

pytest.importorskip("transformers")


@pytest.mark.slow
def test_distil_a_token_tagger_through_ray_and_mlflow(tmp_path: Path, ray_session) -> None:
    import mlflow
    import numpy as np
    import onnxruntime as ort
    from mlflow.tracking import MlflowClient

    from kdforge.config import SearchConfig
    from kdforge.search.driver import run_search

    teacher_dir = tagging.build_tagger(tmp_path / "tagger")
    data = tagging.write_jsonl(tmp_path / "tags.jsonl", tagging.sentences(240, seed=5))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = SearchConfig.model_validate(
        {
            "name": "tagging",
            "output_dir": str(tmp_path / "runs"),
            "dataset": {
                "name": "text",
                "params": {
                    "path": str(data),
                    "tokenizer": str(teacher_dir),
                    "text_column": "tokens",
                    "tags_column": "tags",
                    "max_length": tagging.MAX_LENGTH,
                    "transfer_fraction": 0.2,
                },
            },
            "teacher": {
                "name": "huggingface",
                "params": {"path": str(teacher_dir), "task": "token_classification"},
            },
            "student": {
                "name": "transformer",
                "params": {
                    "max_layers": 1,
                    "hidden_sizes": [16],
                    "heads": [2],
                    "min_ffn": 16,
                    "max_ffn": 32,
                },
            },
            "search": {
                "num_trials": 2,
                "epochs": 2,
                "grace_period": 1,
                "lr": {"low": 5e-3, "high": 1e-2, "log": True},
            },
            "baseline": {"enabled": False},
            "export": {"enabled": True},
            "tracking": {"uri": uri},
        }
    )
    lines: list[str] = []
    result = run_search(config, emit=lines.append)
    assert result.best is not None
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["metric"] == "token_macro_f1"
    assert summary["teacher_test_token_macro_f1"] > 0.9, summary
    leaderboard = (result.search_dir / "leaderboard.csv").read_text()
    assert "val_token_macro_f1" in leaderboard.splitlines()[0]
    assert result.best.val_acc is not None and result.best.val_acc > 0.3

    # The registered ONNX model tags every position: (n, seq_len, tags).
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias(config.registered_model_name, "champion")
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{config.registered_model_name}/{version.version}",
            dst_path=str(tmp_path / "dl"),
        )
    )
    onnx_file = next(local.rglob("*.onnx"))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = np.zeros((3, tagging.MAX_LENGTH), dtype=np.int64)
    x[:, 0], x[:, 1:4], x[:, 4] = 2, 20, 3  # [CLS] three words [SEP], then padding
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == (3, tagging.MAX_LENGTH, 3)
    # Parity of the export was checked on padded test rows, every position compared.
    assert summary["export_max_abs_diff"] < 1e-3
    info = mlflow.models.get_model_info(f"models:/{config.registered_model_name}/{version.version}")
    assert info.signature is not None
    assert list(info.signature.outputs.inputs[0].shape)[1:] == [tagging.MAX_LENGTH, 3]
    assert summary["student_test_token_macro_f1"] > 0.3, summary
