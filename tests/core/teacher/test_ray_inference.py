"""Teacher outputs computed as a Ray job: the same bits as the local path, cached alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdforge.batching import SubsetInputs, TensorInputs
from kdforge.checkpoint import save_checkpoint
from kdforge.config import PluginRef
from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.config.teacher_inference_settings import TeacherInferenceSettings
from kdforge.data import DataSplits, Split
from kdforge.errors import PluginError
from kdforge.interfaces import LossNeeds
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.teacher.cache import prepare_teacher_outputs
from kdforge.teacher.inference import TeacherInference, inference_place
from kdforge.teacher.outputs import TeacherOutputs, compute_teacher_outputs

BATCH = 128
ARCH = {"depth": 1, "width_0": 32, "dropout": 0.0}


@pytest.fixture(scope="module")
def splits() -> DataSplits:
    return Digits(Digits.Params(transfer_fraction=0.5)).load(0)


def _teacher(path: Path) -> CheckpointTeacher:
    teacher = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
    teacher.load()
    return teacher


def _ray(path: Path | None, **settings: object) -> TeacherInference:
    ref = None if path is None else PluginRef(name="checkpoint", params={"path": str(path)})
    config = TeacherInferenceSettings.model_validate(
        {"where": "ray", "batch_size": BATCH, "actors": 2, **settings}
    )
    return TeacherInference(config, teacher_ref=ref)


def _assert_equal(ours: TeacherOutputs, theirs: TeacherOutputs) -> None:
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(ours, split), getattr(theirs, split)), split
    assert list(ours.train_features) == list(theirs.train_features)
    for name, value in theirs.train_features.items():
        assert torch.equal(ours.train_features[name], value), name
    assert ours.forward_calls == theirs.forward_calls
    assert ours.has_logits == theirs.has_logits


def test_auto_is_local_on_one_machine_and_ray_on_a_cluster() -> None:
    auto = TeacherInferenceSettings.model_validate({})
    assert inference_place(auto, on_cluster=False) == "local"
    assert inference_place(auto, on_cluster=True) == "ray"
    local = TeacherInferenceSettings.model_validate({"where": "local"})
    assert inference_place(local, on_cluster=True) == "local"


def test_auto_keeps_a_process_local_teacher_local() -> None:
    from kdforge.plugins.teachers.in_memory import InMemoryTeacher

    teacher = InMemoryTeacher(InMemoryTeacher.Params(key="not-loaded"))
    auto = TeacherInferenceSettings.model_validate({})
    assert inference_place(auto, on_cluster=True, teacher=teacher) == "local"
    ray = TeacherInferenceSettings.model_validate({"where": "ray"})
    assert inference_place(ray, on_cluster=False, teacher=teacher) == "ray"


@pytest.mark.slow
def test_ray_job_gives_the_local_outputs_bit_for_bit(
    ray_session, digits_teacher_path: Path, splits: DataSplits
) -> None:
    teacher = _teacher(digits_teacher_path)
    needs = LossNeeds(features=True)
    local = compute_teacher_outputs(teacher, splits, BATCH, needs=needs, emit=lambda _: None)
    lines: list[str] = []
    inference = _ray(digits_teacher_path)
    on_ray = inference(teacher, splits, needs=needs, emit=lines.append)
    _assert_equal(on_ray, local)
    assert local.train_features  # the feature path was compared too
    job = inference.last_job
    rows = sum(len(split.y) for split in splits.named_splits().values())
    assert job is not None and job.actors == 2 and job.rows == rows > 0
    assert job.devices == ["cpu", "cpu"]
    assert any("rows/s" in line for line in lines), lines


@pytest.mark.slow
def test_streamed_inputs_are_read_on_the_workers(
    ray_session, digits_teacher_path: Path, splits: DataSplits
) -> None:
    # Lazy inputs travel to the actors once and are read there; the teacher travels
    # as the loaded object when there is no reference to rebuild it from.
    def lazy(split: Split) -> Split:
        rows = np.arange(len(split.y))
        return Split(SubsetInputs(TensorInputs(split.x), rows), split.y)

    streamed = DataSplits(
        info=splits.info,
        train=lazy(splits.train),
        val=lazy(splits.val),
        test=lazy(splits.test),
        transfer=splits.transfer,
    )
    teacher = _teacher(digits_teacher_path)
    local = compute_teacher_outputs(teacher, streamed, BATCH, emit=lambda _: None)
    _assert_equal(_ray(None)(teacher, streamed, emit=lambda _: None), local)


@pytest.mark.slow
def test_ray_written_entry_is_a_cache_hit_for_the_next_search(
    ray_session, digits_teacher_path: Path, splits: DataSplits, tmp_path: Path
) -> None:
    teacher = _teacher(digits_teacher_path)
    settings = TeacherCacheSettings()
    lines: list[str] = []
    first = prepare_teacher_outputs(
        teacher,
        splits,
        settings,
        cache_dir=tmp_path / "cache",
        emit=lines.append,
        inference=_ray(digits_teacher_path),
    )
    assert first.forward_calls > 0 and any("cache miss" in line for line in lines)
    # The next search, on one machine (the default local inference), reads the entry.
    lines.clear()
    second = prepare_teacher_outputs(
        teacher, splits, settings, cache_dir=tmp_path / "cache", emit=lines.append
    )
    assert second.forward_calls == 0 and any("cache hit" in line for line in lines), lines
    local = compute_teacher_outputs(teacher, splits, emit=lambda _: None)
    assert torch.equal(second.train[:], local.train)
    assert torch.equal(second.val, local.val) and torch.equal(second.test, local.test)


@pytest.mark.slow
def test_a_teacher_missing_or_different_on_the_workers_is_refused(
    ray_session, digits_teacher_path: Path, splits: DataSplits, tmp_path: Path
) -> None:
    teacher = _teacher(digits_teacher_path)
    missing = tmp_path / "missing.pt"
    with pytest.raises(PluginError, match=r"could not be loaded on Ray node \w+: .*missing\.pt"):
        _ray(missing, actors=1)(teacher, splits, emit=lambda _: None)
    # The workers rebuild another teacher than the driver's: its fingerprint tells.
    other = save_checkpoint(
        tmp_path / "other.pt",
        space="mlp",
        arch=ARCH,
        info=splits.info,
        model=MLPSpace().build(ARCH, splits.info),
    )
    with pytest.raises(PluginError, match="differs from the driver's"):
        _ray(other, actors=1)(teacher, splits, emit=lambda _: None)
