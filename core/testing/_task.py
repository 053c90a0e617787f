"""Contract of tasks: what models predict and how that is scored (see :mod:`kdforge.testing`)."""

from __future__ import annotations

import json
import math
import pickle
from typing import ClassVar

import pytest
import torch

from kdforge.data import NOT_A_WORD, UNLABELED, DataInfo, DataSplits, Split
from kdforge.errors import DataError
from kdforge.interfaces import OUTPUT_KINDS, Task
from kdforge.testing._base import PluginContract, dumps

__all__ = ["TaskContract"]


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal metric dicts, NaN equal to NaN (a split without labels gives NaN)."""
    return a.keys() == b.keys() and all(
        (x != x and y != y) or x == y for x, y in ((a[k], b[k]) for k in a)
    )


class TaskContract(PluginContract):
    """A task checks, prepares and scores targets of its form consistently.

    The checks follow the host's call order: ``check(splits)`` and ``prepare(splits)``
    once in the driver, ``state()`` carried to a fresh instance (``load_state``) as in
    a trial process, then ``label_loss``, ``soft_target``, ``metrics`` on batches of
    the prepared targets and ``output_head`` at export.

    The example data comes from :meth:`make_splits`; its default builds targets of the
    form that ``plugin.output_kind`` implies (class ids with ``-1`` rows for
    ``class_logits``, 0/1 float rows with NaN rows for ``label_logits``, real float rows
    with NaN rows for ``values``; for ``token_logits`` token-id inputs ``(n, seq_len)``
    and int64 tags ``(n, seq_len)`` with ``-2`` on padding and later sub-tokens and
    ``-1`` for unknown tags). Override it when the task takes another form, and
    :meth:`perfect_outputs` and :meth:`wrong_targets` with it.

    Attributes:
        width: Classes, labels or targets of the example data (``DataInfo.num_classes``).
        rows: Rows of each example split.
        seq_len: Positions per row of ``token_logits`` example data.
        temperatures: Temperatures :meth:`Task.soft_target` is checked at.
    """

    kind = "task"
    base = Task
    width: ClassVar[int] = 3
    rows: ClassVar[int] = 24
    seq_len: ClassVar[int] = 6
    temperatures: ClassVar[tuple[float, ...]] = (1.0, 4.0)

    # -- hooks a subclass may override ------------------------------------------------

    def make_splits(self, plugin: Task) -> DataSplits:
        """Example data for ``plugin``: train/val/test/transfer splits of :attr:`rows`.

        Whatever an override returns, the checks expect a train split with labeled and
        unlabeled rows, fully labeled val and test splits, and a transfer split of
        unlabeled rows only.
        """
        g = torch.Generator().manual_seed(0)
        n, k, length = self.rows, self.width, self.seq_len
        tokens = plugin.output_kind == "token_logits"
        info = DataInfo(
            name="contract-task",
            input_shape=(length,) if tokens else (4,),
            num_classes=k,
            task=type(plugin).name,
            input_dtype="int64" if tokens else "float32",
            vocab_size=20 if tokens else None,
            pad_token_id=0 if tokens else None,
        )

        def targets(labeled: bool) -> torch.Tensor:
            if tokens:
                # Words of 1 or 2 sub-tokens, then padding (-2 after the row's length).
                y = torch.randint(0, k, (n, length), generator=g)
                y[0, :k] = torch.arange(k)  # every tag occurs
                y[:, 1::3] = NOT_A_WORD  # a later sub-token of the word before
                lengths = torch.randint(2, length + 1, (n,), generator=g)
                y[torch.arange(length)[None, :] >= lengths[:, None]] = NOT_A_WORD
                y[0, :k] = torch.arange(k)
                if not labeled:
                    y[y >= 0] = UNLABELED
                return y
            if plugin.output_kind == "class_logits":
                y = torch.randint(0, k, (n,), generator=g)
                y[:k] = torch.arange(k)  # every class occurs
                if not labeled:
                    y[:] = UNLABELED
                return y
            if plugin.output_kind == "label_logits":
                y = (torch.rand(n, k, generator=g) < 0.5).float()
                y[0], y[1] = 1.0, 0.0  # every label has a positive and a negative row
            else:
                # Off-centre, wide values: a task that standardises must undo it.
                y = torch.randn(n, k, generator=g) * torch.arange(1.0, k + 1) * 3 + 10
            if not labeled:
                y[:] = float("nan")
            return y

        def split(labeled: bool = True) -> Split:
            if tokens:
                y = targets(labeled)
                x = torch.randint(1, 20, (n, length), generator=g)
                x[(y == NOT_A_WORD) & (torch.arange(length) >= 2)] = 0  # padding (id 0)
                return Split(x, y)
            return Split(torch.randn(n, 4, generator=g), targets(labeled))

        train = split()
        unlabeled = torch.arange(n) % 4 == 3
        if tokens:
            rows = train.y[unlabeled]
            rows[rows >= 0] = UNLABELED
            train.y[unlabeled] = rows
        elif train.y.is_floating_point():
            train.y[unlabeled] = float("nan")
        else:
            train.y[unlabeled] = UNLABELED
        return DataSplits(info, train, split(), split(), transfer=split(labeled=False))

    def perfect_outputs(self, plugin: Task, targets: torch.Tensor) -> torch.Tensor:
        """Model outputs that predict prepared ``targets`` exactly (0 on unlabeled rows)."""
        k = plugin.num_outputs(self._info(plugin))
        if plugin.output_kind == "token_logits":
            out = torch.zeros(*targets.shape, k)
            keep = targets >= 0
            out[keep] = torch.nn.functional.one_hot(targets[keep], k).float() * 10
            return out
        if plugin.output_kind == "class_logits":
            out = torch.zeros(len(targets), k)
            keep = targets != UNLABELED
            out[keep] = torch.nn.functional.one_hot(targets[keep], k).float() * 10
            return out
        filled = torch.nan_to_num(targets.float())
        return (filled * 2 - 1) * 10 if plugin.output_kind == "label_logits" else filled

    def wrong_targets(self, plugin: Task, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Targets ``check`` must refuse, by what is wrong with them (from valid ones)."""
        n = len(targets)
        if plugin.output_kind == "token_logits":
            return {
                "float tags": targets.float(),
                "one tag per row": targets[:, 0].contiguous(),
                "a position too many": torch.cat([targets, targets[:, :1]], dim=1),
                "a tag below -2": targets - 5,
            }
        if plugin.output_kind == "class_logits":
            return {
                "float class ids": targets.float(),
                "a 2-D block": targets[:, None].expand(n, 2).contiguous(),
            }
        width = targets.shape[1]
        return {
            "one value per row": targets[:, 0].contiguous(),
            "one column too many": torch.cat([targets, targets[:, :1]], dim=1),
            "integers": torch.zeros(n, width, dtype=torch.int64),
        }

    # -- fixtures ---------------------------------------------------------------------

    def _info(self, plugin: Task) -> DataInfo:
        return self.make_splits(plugin).info

    @pytest.fixture
    def splits(self, plugin: Task) -> DataSplits:
        """The example data of :meth:`make_splits`."""
        return self.make_splits(plugin)

    @pytest.fixture
    def prepared(self, plugin: Task, splits: DataSplits) -> DataSplits:
        """``splits`` after ``check`` and ``prepare`` (``plugin`` is prepared too)."""
        plugin.check(splits)
        return plugin.prepare(splits)

    def _random_outputs(self, plugin: Task, n: int, seed: int = 1) -> torch.Tensor:
        info = self._info(plugin)
        k = plugin.num_outputs(info)
        shape = (n, int(info.input_shape[0]), k) if info.per_position else (n, k)
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2

    # -- checks -----------------------------------------------------------------------

    def test_declarations_are_consistent(self, plugin: Task) -> None:
        cls = type(plugin)
        assert cls.output_kind in OUTPUT_KINDS, (
            f"output_kind {cls.output_kind!r} is not one of {sorted(OUTPUT_KINDS)}"
        )
        names = tuple(cls.metric_names)
        assert names and len(names) == len(set(names)), f"metric_names {names}"
        assert cls.metric in names, f"metric {cls.metric!r} is not in metric_names {names}"
        # Metric names become keys like val_<name> in reports and MLflow.
        assert all(n and n.isidentifier() for n in names), f"metric_names {names}"
        assert isinstance(cls.higher_is_better, bool)

    def test_num_outputs_is_positive(self, plugin: Task, splits: DataSplits) -> None:
        k = plugin.num_outputs(splits.info)
        assert isinstance(k, int) and k > 0, f"num_outputs gave {k!r}"

    def test_check_accepts_the_example(self, plugin: Task, splits: DataSplits) -> None:
        plugin.check(splits)

    def test_check_refuses_wrong_targets(self, plugin: Task, splits: DataSplits) -> None:
        for what, y in self.wrong_targets(plugin, splits.val.y).items():
            bad = DataSplits(splits.info, splits.train, Split(splits.val.x, y), splits.test)
            with pytest.raises(DataError) as caught:
                plugin.check(bad)
            assert "val" in str(caught.value), f"{what}: the error does not name the split"

    def test_prepare_keeps_rows_and_labels(
        self, plugin: Task, splits: DataSplits, prepared: DataSplits
    ) -> None:
        assert isinstance(prepared, DataSplits)
        before, after = splits.named_splits(), prepared.named_splits()
        assert before.keys() == after.keys(), "prepare added or dropped a split"
        for name, split in after.items():
            assert len(split) == len(before[name]), f"prepare changed the {name} row count"
            assert split.y.shape == before[name].y.shape, f"prepare reshaped {name} targets"
            assert torch.equal(plugin.labeled(split.y), plugin.labeled(before[name].y)), name

    def test_labeled_is_a_row_mask(self, plugin: Task, prepared: DataSplits) -> None:
        for name, split in prepared.named_splits().items():
            mask = plugin.labeled(split.y)
            assert mask.dtype == torch.bool and tuple(mask.shape) == (len(split),), name
        assert bool(plugin.labeled(prepared.train.y).any()), "no labeled train row"
        assert not bool(plugin.labeled(prepared.train.y).all()), "no unlabeled train row"
        assert prepared.transfer is not None
        assert not bool(plugin.labeled(prepared.transfer.y).any()), "transfer rows labeled"

    def test_label_loss_is_a_finite_differentiable_scalar(
        self, plugin: Task, prepared: DataSplits
    ) -> None:
        outputs = self._random_outputs(plugin, len(prepared.train)).requires_grad_(True)
        loss = plugin.label_loss(outputs, prepared.train.y)
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0, "label_loss is not a scalar"
        assert bool(torch.isfinite(loss)), f"label_loss is {float(loss.detach())}"
        loss.backward()
        assert outputs.grad is not None, "label_loss does not depend on the outputs"
        assert bool(torch.isfinite(outputs.grad).all())
        assert float(outputs.grad.abs().sum()) > 0, "label_loss has a zero gradient"
        unlabeled = ~plugin.labeled(prepared.train.y)
        assert float(outputs.grad[unlabeled].abs().sum()) == 0, "unlabeled rows get gradient"

    def test_label_loss_is_zero_without_labels(self, plugin: Task, prepared: DataSplits) -> None:
        assert prepared.transfer is not None
        outputs = self._random_outputs(plugin, len(prepared.transfer)).requires_grad_(True)
        loss = plugin.label_loss(outputs, prepared.transfer.y)
        assert loss.dim() == 0 and float(loss.detach()) == 0.0, f"loss {float(loss.detach())}"
        if loss.requires_grad:
            loss.backward()
            assert outputs.grad is None or bool(torch.isfinite(outputs.grad).all())

    def test_metrics_are_named_finite_and_directed(
        self, plugin: Task, prepared: DataSplits
    ) -> None:
        y = prepared.val.y
        perfect = plugin.metrics(self.perfect_outputs(plugin, y), y)
        noise = plugin.metrics(self._random_outputs(plugin, len(y)), y)
        for values in (perfect, noise):
            assert set(values) == set(type(plugin).metric_names), f"metrics gave {sorted(values)}"
            for key, value in values.items():
                assert isinstance(value, float) and math.isfinite(value), f"{key}={value!r}"
        assert plugin.better(perfect[plugin.metric], noise[plugin.metric]), (
            f"{plugin.metric}: perfect outputs score {perfect[plugin.metric]}, random ones "
            f"{noise[plugin.metric]} (higher_is_better={plugin.higher_is_better})"
        )
        assert plugin.better(perfect[plugin.metric], plugin.worst)
        assert not plugin.better(float("nan"), perfect[plugin.metric])

    def test_metrics_without_labels_are_nan(self, plugin: Task, prepared: DataSplits) -> None:
        assert prepared.transfer is not None
        y = prepared.transfer.y
        values = plugin.metrics(self._random_outputs(plugin, len(y)), y)
        assert set(values) == set(type(plugin).metric_names)
        assert all(v != v for v in values.values()), f"metrics without labels: {values}"

    def test_soft_target_keeps_the_shape(self, plugin: Task, prepared: DataSplits) -> None:
        outputs = self._random_outputs(plugin, len(prepared.val))
        for temperature in self.temperatures:
            target = plugin.soft_target(outputs, temperature)
            assert target.shape == outputs.shape, f"T={temperature}: shape {tuple(target.shape)}"
            assert bool(torch.isfinite(target).all()), f"T={temperature}"

    def test_prepare_outputs_keeps_the_shape(self, plugin: Task, prepared: DataSplits) -> None:
        outputs = self._random_outputs(plugin, len(prepared.val))
        moved = plugin.prepare_outputs(outputs)
        assert moved.shape == outputs.shape and bool(torch.isfinite(moved).all())

    def test_state_rebuilds_the_same_task(self, plugin: Task, prepared: DataSplits) -> None:
        state = plugin.state()
        assert isinstance(state, dict)
        # Trials and checkpoints get the state through JSON: it must survive a round trip.
        fresh = type(plugin)(plugin.params)
        fresh.load_state(json.loads(json.dumps(state)))
        y = prepared.val.y
        outputs = self._random_outputs(plugin, len(y))
        assert _same(fresh.metrics(outputs, y), plugin.metrics(outputs, y))
        assert torch.equal(fresh.prepare_outputs(outputs), plugin.prepare_outputs(outputs))
        assert torch.equal(fresh.label_loss(outputs, y), plugin.label_loss(outputs, y))
        head, fresh_head = plugin.output_head(), fresh.output_head()
        assert (head is None) == (fresh_head is None)
        if head is not None and fresh_head is not None:
            assert torch.equal(head.eval()(outputs), fresh_head.eval()(outputs))

    def test_output_head_maps_outputs_to_outputs(self, plugin: Task, prepared: DataSplits) -> None:
        head = plugin.output_head()
        if head is None:
            return
        assert isinstance(head, torch.nn.Module), "output_head must be None or an nn.Module"
        outputs = self._random_outputs(plugin, len(prepared.val))
        with torch.no_grad():
            served = head.eval()(outputs)
        assert served.shape == outputs.shape and bool(torch.isfinite(served).all())

    def test_prepared_task_pickles(self, plugin: Task, prepared: DataSplits) -> None:
        # Ray ships the task to trial processes with cloudpickle.
        restored = pickle.loads(dumps(plugin))
        assert type(restored) is type(plugin)
        assert pickle.loads(dumps(type(plugin))) is type(plugin)
        y = prepared.val.y
        outputs = self._random_outputs(plugin, len(y))
        assert _same(restored.metrics(outputs, y), plugin.metrics(outputs, y))
