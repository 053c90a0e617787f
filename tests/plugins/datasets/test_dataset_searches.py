"""A short real search (Ray Tune + MLflow) on a small dataset of every kind.

For each kind the test writes the files into a temporary folder, trains a small
teacher with ``train_teacher`` and runs a 3-trial, 3-epoch search through
``run_search``. Text runs as int64 token ids (a local tokenizer) through the
transformer space. The image folder is searched twice, held in memory and streamed
(``storage: stream``), and both searches must give the same metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kdforge.config import SearchConfig, TeacherConfig
from kdforge.search.driver import SearchResult, run_search
from kdforge.teacher.train_teacher import train_teacher
from tests.conftest import tiny_search_config
from tests.plugins.datasets import builders

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("dataset-searches")
    return folder, f"sqlite:///{folder / 'mlflow.db'}"


def _image_folder(folder: Path) -> dict[str, Any]:
    root = builders.write_image_folder(folder / "images", per_class=14, split_layout=True)
    return {"name": "image_folder", "params": {"root": str(root), "image_size": 8}}


def _tabular(folder: Path) -> dict[str, Any]:
    path = builders.write_table(folder / "table.parquet")
    return {"name": "tabular", "params": {"path": str(path), "target": "species"}}


def _text(folder: Path) -> dict[str, Any]:
    pytest.importorskip("transformers")
    rows = builders.text_rows(150, unlabeled=30)
    path = builders.write_jsonl(folder / "reviews.jsonl", rows)
    tokenizer = builders.write_tokenizer(folder / "tokenizer", [r["text"] for r in rows])
    params = {"path": str(path), "tokenizer": str(tokenizer), "max_length": 8}
    return {"name": "text", "params": params}  # int64 token ids


def _arrays(folder: Path) -> dict[str, Any]:
    path = builders.write_npz(folder / "blobs.npz", n=180)
    return {"name": "arrays", "params": {"path": str(path), "transfer_fraction": 0.3}}


def _hf_disk(folder: Path) -> dict[str, Any]:
    pytest.importorskip("datasets")
    path = builders.write_hf_dataset(folder / "hf", n=150)
    return {"name": "hf_disk", "params": {"path": str(path)}}


MLP_TEACHER = {"name": "mlp", "params": {"depth": 1, "width_0": 64}}
SMALL_MLP = {"name": "mlp", "params": {"max_depth": 1, "max_width": 16}}
# Token ids need an embedding-based student: the transformer space, teacher and student.
TRANSFORMER_TEACHER = {
    "name": "transformer",
    "params": {"layers": 1, "hidden": 16, "heads": 2, "ffn": 32},
}
SMALL_TRANSFORMER = {
    "name": "transformer",
    "params": {"max_layers": 1, "hidden_sizes": [8], "heads": [2], "min_ffn": 8, "max_ffn": 16},
}
KINDS = {
    "image_folder": (
        _image_folder,
        MLP_TEACHER,
        {"name": "cnn", "params": {"max_depth": 1, "max_channels": 8}},
    ),
    "tabular": (_tabular, MLP_TEACHER, SMALL_MLP),
    "text": (_text, TRANSFORMER_TEACHER, SMALL_TRANSFORMER),
    "arrays": (_arrays, MLP_TEACHER, SMALL_MLP),
    "hf_disk": (_hf_disk, MLP_TEACHER, SMALL_MLP),
}


def _train_teacher(
    dataset: dict[str, Any], architecture: dict[str, Any], folder: Path, uri: str
) -> Path:
    config = TeacherConfig.model_validate(
        {
            "name": f"{dataset['name']}-teacher",
            "dataset": dataset,
            "architecture": architecture,
            "training": {"epochs": 12, "lr": 0.01},
            "output": str(folder / "teacher.pt"),
            "tracking": {"uri": uri},
        }
    )
    train_teacher(config, emit=lambda _: None)
    return folder / "teacher.pt"


def _search(
    name: str,
    dataset: dict[str, Any],
    student: dict[str, Any],
    teacher: Path,
    folder: Path,
    uri: str,
    export: bool,
) -> SearchResult:
    raw = tiny_search_config(
        teacher,
        folder,
        **{
            "name": name,
            "dataset": dataset,
            "student": student,
            "search.epochs": 3,
            "search.grace_period": 3,  # ASHA stops nothing: every trial runs its 3 epochs
            "search.batch_size": 8,
            "search.lr": {"low": 0.01, "high": 0.03, "log": True},
            "baseline.enabled": False,
            "export.enabled": export,
            "export.registered_model_name": f"{name}-student",
            "tracking.uri": uri,
        },
    )
    result = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    assert len(result.rows) == 3
    assert result.best is not None and result.best.status == "finished"
    assert all(r.status == "finished" and 0.0 <= (r.val_acc or -1) <= 1.0 for r in result.rows)
    summary = json.loads((result.search_dir / "summary.json").read_text())
    # Easy classes: the teacher learns them and the best student clearly beats chance.
    assert summary["teacher_test_acc"] > 0.6, summary
    assert summary["student_test_acc"] > 0.45, summary
    return result


def _metrics_by_config(result: SearchResult) -> dict[str, tuple]:
    return {
        json.dumps([r.arch, r.loss_hparams, r.lr], sort_keys=True): (r.val_acc, r.test_acc)
        for r in result.rows
    }


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "image_folder"])
def test_search_runs_end_to_end_on_each_kind(ray_session, workspace, kind: str) -> None:
    root, uri = workspace
    folder = root / kind
    folder.mkdir()
    build, teacher_architecture, student = KINDS[kind]
    dataset = build(folder)
    teacher = _train_teacher(dataset, teacher_architecture, folder, uri)
    export = kind == "text"  # a text student is also registered to take raw text
    result = _search(
        f"search-{kind.replace('_', '-')}", dataset, student, teacher, folder, uri, export
    )
    if export:
        _check_raw_text_model(result, dataset, uri)


def _check_raw_text_model(result: SearchResult, dataset: dict[str, Any], uri: str) -> None:
    """``<name>-text`` answers raw texts with class names, as the ONNX student does on
    the data's own token ids."""
    import mlflow
    import onnxruntime as ort

    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate

    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["text_model_uri"] == "models:/search-text-student-text@champion"
    mlflow.set_tracking_uri(uri)
    texts = [row["text"] for row in builders.text_rows(12, seed=5)]
    labels = mlflow.pyfunc.load_model(summary["text_model_uri"]).predict(texts)["label"].tolist()
    plugin = instantiate("dataset", PluginRef.model_validate(dataset), "dataset")
    splits = plugin.load(0)
    ids = plugin.encoder.transform(texts).numpy()
    session = ort.InferenceSession(summary["export_path"], providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: ids})[0]
    assert labels == [splits.info.class_names[i] for i in logits.argmax(axis=1)]


def test_streamed_search_matches_the_in_memory_search(ray_session, workspace) -> None:
    """Images decoded by DataLoader workers inside the Ray trials, the ONNX export read
    from the streamed test split: the same data and seed give the same trials and the
    same metrics as the in-memory search."""
    root, uri = workspace
    folder = root / "image_folder"
    folder.mkdir()
    build, teacher_architecture, student = KINDS["image_folder"]
    dataset = build(folder)
    teacher = _train_teacher(dataset, teacher_architecture, folder, uri)
    memory = _search("images-memory", dataset, student, teacher, folder, uri, False)
    streamed_dataset = {
        "name": dataset["name"],
        "params": {**dataset["params"], "storage": "stream", "num_workers": 1},
    }
    stream = _search("images-stream", streamed_dataset, student, teacher, folder, uri, True)
    assert _metrics_by_config(stream) == _metrics_by_config(memory)
    summary = json.loads((stream.search_dir / "summary.json").read_text())
    assert summary["export_max_abs_diff"] < 1e-4

    import onnxruntime as ort

    session = ort.InferenceSession(str(stream.search_dir / "student.onnx"))
    zeros = np.zeros([1, 3, 8, 8], np.float32)
    assert session.run(None, {session.get_inputs()[0].name: zeros})[0].shape == (1, 3)
