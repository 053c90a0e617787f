"""The teacher cache: hits run no teacher, misses follow teacher and data changes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kdforge.batching import TensorInputs
from kdforge.checkpoint import save_checkpoint
from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.data import DataSplits, Split
from kdforge.interfaces import ModelOutput
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.teacher.cache import prepare_teacher_outputs
from kdforge.teacher.cached_rows import CachedRows
from kdforge.training.trainer import TrainSettings, train_model

ARCH = {"depth": 1, "width_0": 32, "dropout": 0.0}


class CountingTeacher(CheckpointTeacher):
    """A checkpoint teacher that counts its forward calls and keeps the last batch."""

    def load(self) -> None:
        super().load()
        self.calls = 0
        self.seen: list[torch.Tensor] = []

    def predict(self, x: torch.Tensor) -> ModelOutput:
        self.calls += 1
        self.seen.append(x)
        return super().predict(x)


@pytest.fixture(scope="module")
def splits() -> DataSplits:
    return Digits(Digits.Params(transfer_fraction=0.5)).load(0)


def _save_teacher(path: Path, seed: int, splits: DataSplits) -> Path:
    torch.manual_seed(seed)
    model = MLPSpace().build(ARCH, splits.info)
    return save_checkpoint(path, space="mlp", arch=ARCH, info=splits.info, model=model)


def _teacher(path: Path) -> CountingTeacher:
    teacher = CountingTeacher(CountingTeacher.Params(path=str(path)))
    teacher.load()
    return teacher


def _prepare(teacher, splits, cache: Path, lines: list[str] | None = None, **settings: Any):
    sink = lines.append if lines is not None else (lambda _: None)
    return prepare_teacher_outputs(
        teacher, splits, TeacherCacheSettings(**settings), cache_dir=cache, emit=sink
    )


def _all_train_logits(teacher: CheckpointTeacher, splits: DataSplits) -> torch.Tensor:
    x = torch.cat([splits.train.x, splits.transfer.x])
    return teacher._model(x).detach()


def test_second_run_hits_the_cache_without_running_the_teacher(tmp_path: Path, splits) -> None:
    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    first_teacher = _teacher(path)
    first = _prepare(first_teacher, splits, tmp_path / "cache")
    assert first.forward_calls == first_teacher.calls > 0
    second_teacher = _teacher(path)
    lines: list[str] = []
    second = _prepare(second_teacher, splits, tmp_path / "cache", lines)
    assert second_teacher.calls == 0 and second.forward_calls == 0
    assert any("cache hit" in line for line in lines)
    expected = _all_train_logits(second_teacher, splits)
    torch.testing.assert_close(second.train.materialize(), expected)
    torch.testing.assert_close(second.val, second_teacher._model(splits.val.x).detach())
    assert second.accuracy(splits) == first.accuracy(splits)


def test_teacher_file_change_and_data_change_are_misses(tmp_path: Path, splits) -> None:
    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    cache = tmp_path / "cache"
    _prepare(_teacher(path), splits, cache)
    _save_teacher(path, 1, splits)  # new weights, same file name
    changed = _teacher(path)
    outputs = _prepare(changed, splits, cache)
    assert changed.calls > 0 and outputs.forward_calls == changed.calls
    torch.testing.assert_close(outputs.train.materialize(), _all_train_logits(changed, splits))
    other_data = Digits(Digits.Params(transfer_fraction=0.3)).load(0)
    again = _teacher(path)
    _prepare(again, other_data, cache)
    assert again.calls > 0
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 3


def test_entries_are_memory_mapped_and_travel_as_a_path(tmp_path: Path, splits) -> None:
    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    _prepare(_teacher(path), splits, tmp_path / "cache")
    outputs = _prepare(_teacher(path), splits, tmp_path / "cache")
    rows = outputs.train
    assert isinstance(rows, CachedRows)
    assert isinstance(rows._open()["dense"], np.memmap)
    blob = pickle.dumps(rows)
    assert len(blob) < 1_000  # a path and a spec, not the n x classes floats
    copy = pickle.loads(blob)
    idx = torch.tensor([5, 0, 7])
    torch.testing.assert_close(copy[idx], rows.materialize()[idx])
    in_memory = prepare_teacher_outputs(
        _teacher(path),
        splits,
        TeacherCacheSettings(),
        cache_dir=tmp_path / "cache",
        share="object_store",
        emit=lambda _: None,
    )
    assert isinstance(in_memory.train, torch.Tensor)
    torch.testing.assert_close(in_memory.train, rows.materialize())


def test_float16_and_top_k_storage(tmp_path: Path, splits) -> None:
    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    exact = _all_train_logits(_teacher(path), splits)
    half = _prepare(_teacher(path), splits, tmp_path / "c16", dtype="float16").train.materialize()
    torch.testing.assert_close(half, exact, rtol=2e-3, atol=2e-3)
    top = _prepare(_teacher(path), splits, tmp_path / "ctop", top_k=3).train.materialize()
    p_exact, p_top = torch.softmax(exact, -1), torch.softmax(top, -1)
    keep = torch.topk(exact, 3, dim=1).indices
    # The top-k probabilities are kept exactly, the rest share the remaining mass.
    torch.testing.assert_close(p_top.gather(1, keep), p_exact.gather(1, keep), rtol=1e-4, atol=1e-6)
    assert torch.equal(top.argmax(1), exact.argmax(1))
    rest = torch.ones_like(p_top, dtype=torch.bool).scatter(1, keep, False)
    spread = p_top[rest].view(len(p_top), -1)
    torch.testing.assert_close(spread, spread[:, :1].expand_as(spread))
    sizes = {
        name: sum(f.stat().st_size for f in (tmp_path / name).rglob("logits_train*.npy"))
        for name in ("c16", "ctop")
    }
    assert sizes["ctop"] < exact.numel() * 4 and sizes["c16"] < exact.numel() * 4


def test_trainer_on_cached_rows_equals_training_on_the_tensor(tmp_path: Path, splits) -> None:
    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    cached = _prepare(_teacher(path), splits, tmp_path / "cache").train
    x = torch.cat([splits.train.x, splits.transfer.x])
    y = torch.cat([splits.train.y, splits.transfer.y])
    states = []
    for logits in (cached, cached.materialize()):
        torch.manual_seed(0)
        model = MLPSpace().build({"depth": 1, "width_0": 8, "dropout": 0.0}, splits.info)
        train_model(
            model,
            x=x,
            y=y,
            val_x=splits.val.x,
            val_y=splits.val.y,
            settings=TrainSettings(epochs=2, lr=1e-2, seed=0),
            loss=HintonKD(hparams={"temperature": 3.0, "alpha": 0.5}),
            teacher_logits=logits,
        )
        states.append(model.state_dict())
    for name, value in states[0].items():
        torch.testing.assert_close(value, states[1][name])


def test_damaged_entry_is_recomputed(tmp_path: Path, splits) -> None:
    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    cache = tmp_path / "cache"
    _prepare(_teacher(path), splits, cache)
    next(cache.rglob("logits_train.npy")).unlink()
    teacher = _teacher(path)
    outputs = _prepare(teacher, splits, cache)
    assert teacher.calls > 0
    torch.testing.assert_close(outputs.train.materialize(), _all_train_logits(teacher, splits))


class _Shift:
    """A 'random' augmentation that is easy to recognise: every input gets +100."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return batch + 100.0 + 0.01 * torch.rand_like(batch)


def test_augmented_inputs_run_the_teacher_online(tmp_path: Path, splits) -> None:
    augmented = DataSplits(
        info=splits.info,
        train=Split(TensorInputs(splits.train.x, augmentation=_Shift()), splits.train.y),
        val=splits.val,
        test=splits.test,
        transfer=splits.transfer,
    )
    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    teacher = _teacher(path)
    lines: list[str] = []
    outputs = _prepare(teacher, augmented, tmp_path / "cache", lines)
    assert any("online" in line and "augmented" in line for line in lines)
    assert not (tmp_path / "cache").exists()  # nothing precomputed for training rows
    assert outputs.online_teacher is not None and len(outputs.train) == 0
    assert outputs.accuracy(splits)["val"] >= 0.0
    online = pickle.loads(pickle.dumps(outputs.online_teacher))  # as a trial gets it
    assert online._teacher is None
    model = MLPSpace().build({"depth": 1, "width_0": 8, "dropout": 0.0}, splits.info)
    x = torch.cat([splits.train.x, splits.transfer.x])
    train_model(
        model,
        x=TensorInputs(x, augmentation=_Shift()),
        y=torch.cat([splits.train.y, splits.transfer.y]),
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=2, lr=1e-2, batch_size=256, seed=0),
        loss=HintonKD(hparams={"temperature": 3.0, "alpha": 0.5}),
        teacher_logits=outputs.train,
        online_teacher=online,
    )
    batches = -(-len(x) // 256)
    assert online.calls == 2 * batches  # once per training batch
    assert bool((online._teacher.seen[-1] >= 100).all())  # it saw the augmented batch


def test_baseline_runs_of_an_online_teacher_use_it(tmp_path: Path, splits) -> None:
    """finalize's train_fixed (the distilled baseline) gets the online teacher too."""
    from kdforge.search.baseline import train_fixed
    from kdforge.search.trial import TrialPayload

    path = _save_teacher(tmp_path / "t.pt", 0, splits)
    teacher = _teacher(path)
    augmented = DataSplits(
        info=splits.info,
        train=Split(TensorInputs(splits.train.x, augmentation=_Shift()), splits.train.y),
        val=splits.val,
        test=splits.test,
    )
    outputs = _prepare(teacher, augmented, tmp_path / "cache")
    payload = TrialPayload(
        info=splits.info,
        train_x=augmented.train.x,
        train_y=splits.train.y,
        teacher_train_logits=outputs.train,  # empty: the online teacher replaces it
        val_x=splits.val.x,
        val_y=splits.val.y,
        test_x=splits.test.x,
        test_y=splits.test.y,
        space=MLPSpace(),
        loss_cls=HintonKD,
        loss_params=HintonKD.Params(),
        epochs=1,
        batch_size=512,
        weight_decay=0.0,
        seed=0,
        threads=1,
        online_teacher=outputs.online_teacher,
    )
    arch = {"depth": 1, "width_0": 8, "dropout": 0.0}
    acc = train_fixed(payload, arch, {"temperature": 2.0, "alpha": 0.5}, 1e-2, 0, True)
    assert 0.0 <= acc <= 1.0
    assert outputs.online_teacher.calls == -(-len(splits.train) // 512)


@pytest.mark.slow
def test_second_search_reuses_the_cache_of_an_ensemble(tmp_path: Path, ray_session) -> None:
    from kdforge.config import SearchConfig
    from kdforge.search.driver import run_search
    from tests.conftest import tiny_search_config
    from tests.plugins.teachers._helpers import train_small_teachers

    members = train_small_teachers(tmp_path / "members", epochs=3)
    raw = tiny_search_config(
        members[0],
        tmp_path,
        **{
            "search.num_trials": 2,
            "search.epochs": 2,
            "search.grace_period": 1,
            "baseline.enabled": False,
            "export.enabled": False,
        },
    )
    raw["teacher"] = {
        "name": "ensemble",
        "params": {
            "members": [{"name": "checkpoint", "params": {"path": str(p)}} for p in members]
        },
    }
    config = SearchConfig.model_validate(raw)
    runs = []
    for _ in range(2):
        lines: list[str] = []
        result = run_search(config, emit=lines.append)
        runs.append((result, "\n".join(lines)))
    (first, first_log), (second, second_log) = runs
    assert first.summary["teacher_forward_calls"] > 0 and "cache miss" in first_log
    assert second.summary["teacher_forward_calls"] == 0 and "cache hit" in second_log
    assert second.best is not None  # trials trained from the memory-mapped cache
    for log in (first_log, second_log):  # each member's and the ensemble's accuracy
        assert "teacher accuracy on test: member0:checkpoint=" in log and "ensemble=" in log
    assert second.summary["teacher_test_acc"] == first.summary["teacher_test_acc"]
