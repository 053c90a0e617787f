"""Contracts of the data side: datasets and teachers (see :mod:`kdforge.testing`)."""

from __future__ import annotations

import pickle
from typing import ClassVar

import pytest
import torch

from kdforge.config import PluginRef
from kdforge.data import UNLABELED, DataInfo, DataSplits, LazyInputs
from kdforge.interfaces import DatasetPlugin, ModelOutput, Teacher
from kdforge.plugin_host.resolve import instantiate
from kdforge.testing._base import PluginContract, dumps, example_inputs, first_rows

__all__ = ["DatasetContract", "TeacherContract"]


class DatasetContract(PluginContract):
    """A dataset loads consistent, finite splits with valid labels, reproducibly.

    Targets are checked by the task the data declares (``DataInfo.task``): class ids
    for classification, float rows for regression and multilabel data.

    Attributes:
        seed: Seed passed to ``load``.
    """

    kind = "dataset"
    base = DatasetPlugin
    seed: ClassVar[int] = 0

    @pytest.fixture
    def splits(self, plugin: DatasetPlugin) -> DataSplits:
        """The splits of ``plugin.load(seed)``."""
        return plugin.load(self.seed)

    def test_load_returns_splits_with_info(self, splits: DataSplits) -> None:
        assert isinstance(splits, DataSplits)
        info = splits.info
        assert isinstance(info, DataInfo)
        assert isinstance(info.input_shape, tuple) and info.input_shape
        assert all(isinstance(d, int) and d > 0 for d in info.input_shape)
        # One regression target is one output; a classifier needs two classes.
        assert info.num_classes >= (2 if info.task == "classification" else 1)
        assert isinstance(getattr(torch, info.input_dtype, None), torch.dtype)
        if info.class_names is not None:
            assert len(info.class_names) == info.num_classes

    def test_splits_have_consistent_shapes(self, splits: DataSplits) -> None:
        info = splits.info
        dtype = getattr(torch, info.input_dtype)
        for name, split in splits.named_splits().items():
            assert tuple(split.x.shape[1:]) == tuple(info.input_shape), name
            assert split.x.dtype == dtype, f"{name} inputs are {split.x.dtype}, info says {dtype}"
            if splits.info.task == "classification":
                assert split.y.dtype == torch.int64 and split.y.dim() == 1, name
            assert len(split.x) == len(split.y), name
            rows = first_rows(split.x)
            assert tuple(rows.shape[1:]) == tuple(info.input_shape) and rows.dtype == dtype, name
            if rows.is_floating_point():
                assert bool(torch.isfinite(rows).all()), f"{name} inputs are not finite"
            elif info.vocab_size is not None:
                assert int(rows.min()) >= 0 and int(rows.max()) < info.vocab_size, name
        for name in ("train", "val", "test"):
            assert len(getattr(splits, name)) > 0, f"the {name} split is empty"

    def test_teacher_view_matches_its_info(self, splits: DataSplits) -> None:
        # A teacher's own view (Split.teacher_x) is on every split or on none.
        views = [split.teacher_x is not None for split in splits.named_splits().values()]
        assert len(set(views)) == 1, "teacher_x is set on some splits only"
        assert views[0] == splits.info.has_teacher_view, "teacher_x and DataInfo disagree"
        if not views[0]:
            return
        teacher = splits.info.for_teacher()
        dtype = getattr(torch, teacher.input_dtype)
        for name, split in splits.named_splits().items():
            rows = first_rows(split.teacher_inputs)
            assert tuple(rows.shape[1:]) == tuple(teacher.input_shape), name
            assert rows.dtype == dtype and len(split.teacher_inputs) == len(split.y), name

    def test_lazy_inputs_pickle(self, splits: DataSplits) -> None:
        # Lazy inputs travel to Ray trials and DataLoader workers.
        for name, split in splits.named_splits().items():
            if isinstance(split.x, LazyInputs):
                restored = pickle.loads(dumps(split.x))
                torch.testing.assert_close(restored[:2], split.x[:2], msg=name)

    def test_labels_are_valid(self, splits: DataSplits) -> None:
        if splits.info.task != "classification":
            self._check_task_targets(splits)
            return
        n = splits.info.num_classes
        for name, split in splits.named_splits().items():
            y = split.y
            labeled = y[y != UNLABELED]
            assert bool(((labeled >= 0) & (labeled < n)).all()), f"{name} labels outside [0, {n})"
            if name in ("val", "test"):
                assert len(labeled) == len(y), f"the {name} split must be fully labeled"
        assert bool((splits.train.y != UNLABELED).any()), "train needs labeled rows"

    @staticmethod
    def _check_task_targets(splits: DataSplits) -> None:
        """Targets of another task: its own check, labeled val/test rows, some train."""
        task = instantiate("task", PluginRef(name=splits.info.task), "task")
        task.check(splits)
        for name in ("val", "test"):
            y = getattr(splits, name).y
            assert bool(task.labeled(y).all()), f"the {name} split must be fully labeled"
        assert bool(task.labeled(splits.train.y).any()), "train needs labeled rows"

    def test_same_seed_gives_same_splits(self, plugin: DatasetPlugin, splits: DataSplits) -> None:
        again = plugin.load(self.seed)
        assert again.fingerprint() == splits.fingerprint()


class TeacherContract(PluginContract):
    """A teacher loads, predicts finite logits without gradients, deterministically.

    Attributes:
        input_shape: Per-example shape of the check inputs (default: the teacher's
            ``expected_input_shape()``).
        input_dtype: dtype name of the check inputs (``"int64"`` for token ids).
        vocab_size: Token ids are drawn from ``[0, vocab_size)``.
        batch_size: Rows of the check batch.
    """

    kind = "teacher"
    base = Teacher
    input_shape: ClassVar[tuple[int, ...] | None] = None
    input_dtype: ClassVar[str] = "float32"
    vocab_size: ClassVar[int] = 2
    batch_size: ClassVar[int] = 4

    @pytest.fixture
    def loaded(self, plugin: Teacher) -> Teacher:
        """The plugin after ``load()``."""
        plugin.load()
        return plugin

    @pytest.fixture
    def inputs(self, loaded: Teacher) -> torch.Tensor:
        """A seeded batch of check inputs."""
        shape = self.input_shape or loaded.expected_input_shape()
        if shape is None:
            pytest.fail("the teacher has no expected_input_shape(): set input_shape")
        info = DataInfo("contract", tuple(shape), 2, self.input_dtype, vocab_size=self.vocab_size)
        return example_inputs(info, self.batch_size)

    def test_predict_gives_finite_logits(self, loaded: Teacher, inputs: torch.Tensor) -> None:
        out = loaded.predict(inputs)
        assert isinstance(out, ModelOutput)
        assert out.logits is not None, "the host distills from logits"
        assert out.logits.shape[0] == len(inputs) and out.logits.dim() == 2
        assert out.logits.shape[1] >= 2
        assert bool(torch.isfinite(out.logits).all())
        expected = loaded.expected_num_classes()
        if expected is not None:
            assert out.logits.shape[1] == expected

    def test_predict_has_no_gradients(self, loaded: Teacher, inputs: torch.Tensor) -> None:
        out = loaded.predict(inputs)
        assert out.logits is not None and not out.logits.requires_grad

    def test_predict_is_deterministic_per_row(self, loaded: Teacher, inputs: torch.Tensor) -> None:
        # Row-by-row equals batched only in eval mode (no dropout, frozen batch norm).
        batched = loaded.predict(inputs).logits
        again = loaded.predict(inputs).logits
        rows = [loaded.predict(inputs[i : i + 1]).logits for i in range(len(inputs))]
        assert batched is not None and all(r is not None for r in rows)
        single = torch.cat([r for r in rows if r is not None])
        torch.testing.assert_close(again, batched)
        torch.testing.assert_close(single, batched, rtol=1e-4, atol=1e-5)

    def test_fingerprint_is_stable(self, plugin: Teacher, loaded: Teacher) -> None:
        first = loaded.fingerprint()
        assert isinstance(first, str) and first
        twin = type(plugin)(plugin.params)
        twin.load()
        assert twin.fingerprint() == first == loaded.fingerprint()

    def test_num_parameters(self, loaded: Teacher) -> None:
        count = loaded.num_parameters()
        assert isinstance(count, int) and count > 0
