"""In-memory indexing vs streaming: same batches, same model, threshold and overrides."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from kdforge.batching import (
    ConcatInputs,
    TensorInputs,
    apply_storage,
    choose_storage,
    estimate_bytes,
    has_augmentation,
    iter_batches,
    materialize,
    take,
)
from kdforge.checkpoint import save_checkpoint
from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.plugins.datasets.arrays import Arrays, NpyInputs
from kdforge.plugins.datasets.image_folder import ImageFolder
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.teacher.outputs import compute_teacher_outputs, training_inputs
from kdforge.training.evaluate import evaluate
from kdforge.training.trainer import TrainSettings, train_model
from tests.plugins.datasets.builders import blobs, write_image_folder


@pytest.fixture
def npy_files(tmp_path: Path) -> tuple[Path, Path]:
    x, y = blobs(n=240, dim=6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy"


def _arrays(files: tuple[Path, Path], **params) -> Arrays:
    return Arrays(Arrays.Params(path=str(files[0]), labels=str(files[1]), **params))


def test_choose_storage_by_size_or_forced() -> None:
    assert choose_storage(1_000, "auto", 2_000) == "memory"
    assert choose_storage(3_000, "auto", 2_000) == "stream"
    assert choose_storage(10**15, "memory") == "memory"
    assert choose_storage(1, "stream") == "stream"
    assert choose_storage(1, "auto") == "memory"  # default limit: an eighth of RAM
    with pytest.raises(ConfigError, match="unknown mode"):
        choose_storage(1, "disk")


def test_small_data_is_held_in_memory_and_large_data_streams(npy_files) -> None:
    in_memory = _arrays(npy_files).load(0)
    assert isinstance(in_memory.train.x, torch.Tensor)
    # 240 rows x 6 float32 + labels ~ 7.5 KB: a 4 KB limit makes it "large".
    assert estimate_bytes(in_memory) == 240 * 6 * 4 + 240 * 8
    streamed = _arrays(npy_files, memory_limit_mb=4 / 1024).load(0)
    assert isinstance(streamed.train.x, NpyInputs) and streamed.train.x.num_workers == 2
    torch.testing.assert_close(materialize(streamed.train.x), in_memory.train.x)
    torch.testing.assert_close(streamed.test.y, in_memory.test.y)


def test_streaming_reads_exactly_the_batches_indexing_reads(npy_files) -> None:
    tensor = _arrays(npy_files, storage="memory").load(0).train.x
    lazy = _arrays(npy_files, storage="stream").load(0).train.x
    assert isinstance(lazy, NpyInputs) and lazy.num_workers == 2
    order = torch.randperm(len(tensor), generator=torch.Generator().manual_seed(0))
    indexed = list(iter_batches(tensor, 32, order))
    streamed = list(iter_batches(lazy, 32, order))  # DataLoader with 2 workers
    assert len(indexed) == len(streamed) == 5
    for (i1, b1), (i2, b2) in zip(indexed, streamed, strict=True):
        assert torch.equal(i1, i2) and torch.equal(b1, b2)


def _teacher(tmp_path: Path, info: DataInfo) -> CheckpointTeacher:
    arch = {"depth": 1, "width_0": 32}
    torch.manual_seed(0)
    model = MLPSpace().build(arch, info)
    path = save_checkpoint(tmp_path / "teacher.pt", space="mlp", arch=arch, info=info, model=model)
    teacher = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
    teacher.load()
    return teacher


def _distill(splits, teacher_logits, seed: int = 3):
    torch.manual_seed(seed)
    model = MLPSpace().build({"depth": 2, "width_0": 16, "width_1": 8, "dropout": 0.2}, splits.info)
    train = training_inputs(splits)
    result = train_model(
        model,
        x=train.x,
        y=train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=3, lr=0.01, batch_size=32, seed=seed),
        loss=HintonKD(hparams={"temperature": 2.0, "alpha": 0.5}),
        teacher_logits=teacher_logits,
    )
    return model, result


def test_forced_streaming_gives_the_same_metrics_as_memory(npy_files, tmp_path) -> None:
    """Same data and seed: identical teacher outputs, training history and test metrics."""
    memory = _arrays(npy_files, storage="memory", transfer_fraction=0.2).load(0)
    stream = _arrays(npy_files, storage="stream", transfer_fraction=0.2).load(0)
    assert isinstance(stream.train.x, NpyInputs) and isinstance(memory.train.x, torch.Tensor)
    assert isinstance(training_inputs(stream).x, ConcatInputs)  # train + transfer rows
    teacher = _teacher(tmp_path, memory.info)
    outputs = {
        name: compute_teacher_outputs(teacher, s) for name, s in (("m", memory), ("s", stream))
    }
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(outputs["m"], split), getattr(outputs["s"], split))
    model_m, result_m = _distill(memory, outputs["m"].train)
    model_s, result_s = _distill(stream, outputs["s"].train)
    history_m = [(r.train_loss, r.val_acc, r.val_loss, r.parts) for r in result_m.history]
    history_s = [(r.train_loss, r.val_acc, r.val_loss, r.parts) for r in result_s.history]
    assert history_m == history_s
    assert evaluate(model_m, memory.test.x, memory.test.y) == evaluate(
        model_s, stream.test.x, stream.test.y
    )
    for (name, a), (_, b) in zip(
        model_m.state_dict().items(), model_s.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_training_from_labels_drops_unlabeled_rows_without_reading_them(npy_files) -> None:
    splits = _arrays(npy_files, storage="stream", num_workers=0).load(0)
    y = splits.train.y.clone()
    y[::4] = -1
    kept = take(splits.train.x, y != -1)
    assert len(kept) == int((y != -1).sum())
    torch.testing.assert_close(kept[:5], materialize(splits.train.x)[y != -1][:5])
    results = []
    for x in (splits.train.x, materialize(splits.train.x)):
        torch.manual_seed(0)
        model = MLPSpace().build({"depth": 1, "width_0": 8}, splits.info)
        settings = TrainSettings(epochs=2, lr=0.01, batch_size=16)
        out = train_model(
            model, x=x, y=y, val_x=splits.val.x, val_y=splits.val.y, settings=settings
        )
        results.append([r.train_loss for r in out.history])
    assert results[0] == results[1]


def test_lazy_inputs_index_concat_pickle_and_fingerprint(npy_files) -> None:
    lazy = _arrays(npy_files, storage="stream").load(0).val.x
    tensor = materialize(lazy)
    assert torch.equal(lazy[3], tensor[3]) and torch.equal(lazy[-1], tensor[-1])
    assert torch.equal(lazy[2:7], tensor[2:7])
    assert torch.equal(lazy[torch.tensor([5, 0, 5])], tensor[[5, 0, 5]])
    both = ConcatInputs([lazy, tensor[:4]])
    assert torch.equal(both[[len(lazy) + 1, 0]], torch.stack([tensor[1], tensor[0]]))
    lazy.array()  # open the memory map, then check it is not pickled
    restored = pickle.loads(pickle.dumps(lazy))
    assert restored._array is None and torch.equal(restored[:3], tensor[:3])
    first = lazy.fingerprint()
    np.save(npy_files[0], np.load(npy_files[0]) * 2)
    assert lazy.fingerprint() != first


def test_augmentation_applies_to_training_batches_only(tmp_path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=6)
    params = {"root": str(root), "image_size": 8, "augment": {"enabled": True, "crop_padding": 2}}
    splits = ImageFolder(ImageFolder.Params(**params)).load(0)
    train = splits.train.x
    assert isinstance(train, TensorInputs) and has_augmentation(train)
    assert isinstance(splits.val.x, torch.Tensor) and not has_augmentation(splits.val.x)
    plain = train.read_batch(list(range(len(train))))
    assert torch.equal(plain, train.tensor)  # teacher outputs and evaluation: no augmentation
    torch.manual_seed(0)
    _, augmented = next(iter_batches(train, len(train), augment=True))
    assert augmented.shape == plain.shape and not torch.equal(augmented, plain)
    streamed = ImageFolder(ImageFolder.Params(**params, storage="stream")).load(0)
    assert has_augmentation(streamed.train.x) and streamed.train.x.num_workers == 2
    torch.testing.assert_close(streamed.train.x[:], plain)


def test_apply_storage_keeps_labels_and_wraps_tensors_when_forced(npy_files) -> None:
    splits = _arrays(npy_files, storage="memory").load(0)
    forced = apply_storage(splits, storage="stream", num_workers=1)
    assert isinstance(forced.train.x, TensorInputs) and forced.train.x.num_workers == 1
    assert forced.train.x.tensor is splits.train.x
    assert torch.equal(forced.train.y, splits.train.y)
    assert forced.fingerprint() == apply_storage(splits, storage="stream").fingerprint()
