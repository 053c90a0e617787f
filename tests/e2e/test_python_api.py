"""kdforge.distill through real Ray and MLflow: in-memory teachers and data, the cache,
the result object, and the CLI and the API giving the same trials."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import kdforge
from kdforge.cli import main as cli_main
from kdforge.config import TeacherRef, load_search_config
from kdforge.plugin_host.resolve import instantiate
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target)


def train_teacher(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def tiny(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """Settings of a very small search (2 trials, 2 epochs), as distill keywords."""
    out: dict[str, Any] = {
        "student": {"name": "mlp", "params": {"max_depth": 1, "max_width": 16}},
        "output_dir": str(tmp_path / "runs"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "search": {"num_trials": 2, "epochs": 2, "grace_period": 1, "max_concurrent": 1},
        "baseline": {"enabled": False},
        "export": {"enabled": False},
        "progress": True,
    }
    out.update(sections)
    return out


def test_a_module_on_tensors_gives_a_result_and_hits_the_cache_the_second_time(
    ray_session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    x, y = digits()
    teacher = train_teacher(x, y)
    settings = tiny(tmp_path, export={"registered_model_name": "api-student"})
    result = kdforge.distill(teacher, (x, y), **settings)
    first = capsys.readouterr().out
    assert "teacher outputs: cache miss" in first

    # The result object.
    student = result.student
    assert isinstance(student, nn.Module) and not student.training
    assert student(x[:4]).shape == (4, 10)
    board = result.leaderboard
    assert len(board) == 2 and {"val_acc", "params"} <= set(board.columns)
    assert list(result.pareto.columns) or result.pareto.empty  # a DataFrame either way
    assert result.teacher_metrics["test_acc"] > 0.8
    assert result.student_metrics["params"] == sum(p.numel() for p in student.parameters())
    assert result.compression == pytest.approx(
        result.teacher_metrics["params"] / result.student_metrics["params"]
    )
    assert result.speedup is not None and result.speedup > 0
    assert result.distillation_gain is None  # baseline off
    assert result.onnx_path is not None and result.onnx_path.is_file()
    assert result.model_uri == "models:/api-student@champion"
    client = MlflowClient(settings["tracking"]["uri"])
    assert client.get_run(result.run_id).info.status == "FINISHED"
    # The student of the registered model, rebuilt from its run without pickle.
    again = kdforge.load_student(result.model_uri, tracking_uri=settings["tracking"]["uri"])
    assert torch.equal(again(x[:8]), student(x[:8]))
    assert "student test acc" in result._repr_html_()
    assert "<html" in result.report()._repr_html_().lower()

    # The YAML that re-runs it from the CLI: files the CLI's plugins read, same content.
    path = tmp_path / "replay.yaml"
    result.to_config(path)
    config = load_search_config(path)
    assert config.teacher.name == "checkpoint" and config.dataset.name == "arrays"
    saved = instantiate("teacher", config.teacher, "teacher")
    saved.load()
    assert torch.allclose(saved.predict(x[:16]).logits, teacher(x[:16]), atol=1e-5)
    replayed = instantiate("dataset", config.dataset, "dataset").load(config.seed)
    held = instantiate("dataset", result.config.dataset, "dataset").load(config.seed)
    assert torch.equal(replayed.test.x, held.test.x) and torch.equal(replayed.val.y, held.val.y)

    # Same weights and values in new objects: the teacher cache is hit.
    second = kdforge.distill(
        copy.deepcopy(teacher), (x.clone(), y.clone()), **{**settings, "export": {"enabled": False}}
    )
    out = capsys.readouterr().out
    assert "teacher outputs: cache hit" in out
    assert second.summary["teacher_forward_calls"] == 0


def test_a_datasets_dataset_dict(ray_session, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    x, y = digits()
    teacher = train_teacher(x, y)
    table = datasets.Dataset.from_dict({"pixels": x.numpy(), "label": y.numpy()})
    data = datasets.DatasetDict(
        {"train": table.select(range(1200)), "test": table.select(range(1200, len(table)))}
    )
    result = kdforge.distill(teacher, data, **tiny(tmp_path, progress=False))
    assert len(result.leaderboard) == 2
    assert result.summary["dataset"] == "in_memory"
    assert result.student_metrics["test_acc"] > 0.1  # 2 epochs: better than chance


def test_a_dataloader_and_a_plain_function_teacher(ray_session, tmp_path: Path) -> None:
    x, y = digits()
    model = train_teacher(x, y)

    def teacher(batch: torch.Tensor) -> torch.Tensor:
        return model(batch)

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True
    )
    result = kdforge.distill(teacher, loader, **tiny(tmp_path, progress=False))
    assert len(result.leaderboard) == 2
    assert result.teacher_metrics["params"] == 0  # a function has no parameters to count
    assert result.teacher_metrics["test_acc"] > 0.8
    assert "REPLACE" in result.to_config()  # a function cannot be saved without pickle


def test_the_cli_and_the_api_run_the_same_trials(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path / "cli",
        **{
            "name": "parity",
            "search.num_trials": 3,
            "search.epochs": 2,
            "search.grace_period": 2,
            "search.max_concurrent": 1,
            "baseline.enabled": False,
            "export.enabled": False,
        },
    )
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli_main(["search", str(path)]) == 0
    (cli_dir,) = (tmp_path / "cli" / "runs" / "parity").iterdir()

    api_raw = {**raw, "output_dir": str(tmp_path / "api" / "runs")}
    teacher, data = api_raw.pop("teacher"), api_raw.pop("dataset")
    result = kdforge.distill(teacher, data, progress=False, **api_raw)

    import pandas as pd

    columns = ["number", "lr", "student.depth", "student.width_0", "val_acc", "test_acc"]
    by_cli = pd.read_csv(cli_dir / "leaderboard.csv").sort_values("number")
    by_api = result.leaderboard.sort_values("number")
    assert len(by_api) == 3
    pd.testing.assert_frame_equal(
        by_cli[columns].reset_index(drop=True), by_api[columns].reset_index(drop=True)
    )
    assert TeacherRef(name="checkpoint", params=teacher["params"]) == result.config.teacher


def test_the_data_reaches_the_trials_once_through_the_object_store(
    ray_session, tmp_path: Path
) -> None:
    """The trial payload (data + teacher outputs) is serialised once for all trials."""
    import dataclasses

    from ray.util import deregister_serializer, register_serializer

    from kdforge.search.trial import TrialPayload

    serialised: list[int] = []

    def serialize(payload: TrialPayload) -> dict[str, Any]:
        serialised.append(len(payload.train_x))
        return {f.name: getattr(payload, f.name) for f in dataclasses.fields(payload)}

    def deserialize(state: dict[str, Any]) -> TrialPayload:
        return TrialPayload(**state)

    x, y = digits()
    teacher = train_teacher(x, y)
    settings = tiny(tmp_path, progress=False)
    settings["search"] = {**settings["search"], "num_trials": 3}
    register_serializer(TrialPayload, serializer=serialize, deserializer=deserialize)
    try:
        result = kdforge.distill(teacher, (x, y), **settings)
    finally:
        deregister_serializer(TrialPayload)
    assert len(result.leaderboard) == 3
    # One serialisation (the ray.put of tune.with_parameters) for 3 trials, of the
    # training rows the split kept.
    assert len(serialised) == 1 and 0 < serialised[0] < len(x)
