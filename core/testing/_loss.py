"""Contract of distillation losses (see :mod:`kdforge.testing`)."""

from __future__ import annotations

import math
import pickle
from typing import Any, ClassVar

import pytest
import torch

from kdforge.data import NOT_A_WORD, UNLABELED
from kdforge.interfaces import OUTPUT_KINDS, HParam, LossResult, LossStrategy, ModelOutput, Task
from kdforge.plugin_host.manager import get_registry
from kdforge.testing._base import PluginContract, detached, dumps, settings

__all__ = ["LossContract"]


class LossContract(PluginContract):
    """A loss is finite, differentiable, handles unlabeled rows, and (where that holds)
    is zero when the student equals the teacher.

    The checks follow the trainer's call order: a fresh loss per setting, ``bind``
    once with one batch's outputs, then ``__call__``. Teacher logits are passed only
    when ``needs(params).logits``; named features only when ``needs(params).features``.

    Outputs and labels take the loss's output kind (``class_logits`` when it takes
    them, else its first in :data:`~kdforge.interfaces.OUTPUT_KINDS`): class ids with
    ``-1`` for class logits; float rows (``values``: real numbers, ``label_logits``:
    0/1) with NaN rows for the others; ``token_logits`` (set ``output_kind``): logits
    ``(n, 4, classes)`` with int64 tags per position, ``-2`` on padding positions and
    ``-1`` rows. Losses of a kind other than class logits get the registered task of
    that kind as ``loss.task``.

    Attributes:
        num_classes: Classes of the check logits.
        batch_size: Rows of the check batch.
        teacher_features: Per-example shapes of the teacher's features, by name.
        student_features: Per-example shapes of the student's features, by name.
        zero_when_equal: Set False for losses with terms that do not vanish when the
            student's outputs equal the teacher's on unlabeled rows (e.g. a learned
            adapter between them).
        zero_atol: Tolerance of that check.
        output_kind: Force the output kind of the check batch (None: see above).
    """

    kind = "loss"
    base = LossStrategy
    num_classes: ClassVar[int] = 5
    batch_size: ClassVar[int] = 8
    teacher_features: ClassVar[dict[str, tuple[int, ...]]] = {
        "layer1": (8, 4, 4),
        "layer2": (16, 2, 2),
    }
    student_features: ClassVar[dict[str, tuple[int, ...]]] = {
        "blocks.0": (4, 4, 4),
        "blocks.1": (6, 2, 2),
    }
    zero_when_equal: ClassVar[bool] = True
    zero_atol: ClassVar[float] = 1e-5
    output_kind: ClassVar[str | None] = None

    @pytest.fixture
    def plugin(self) -> Any:
        """The loss with default hyperparameters (midpoints where none is declared)."""
        if self.plugin_class is None:
            pytest.fail(f"{type(self).__name__}: set plugin_class or override the plugin fixture")
        params = self.plugin_class.Params.model_validate(self.plugin_params)
        declared = self.plugin_class.declared_hyperparameters(params)
        return self.plugin_class(params, settings(declared)[0])

    def _declared(self, loss: LossStrategy) -> tuple[HParam, ...]:
        return type(loss).declared_hyperparameters(loss.params)

    def _kind(self, loss: LossStrategy) -> str:
        """The output kind of the check batch."""
        if self.output_kind is not None:
            return self.output_kind
        kinds = type(loss).supported_output_kinds(loss.params)
        return next((k for k in OUTPUT_KINDS if k in kinds), "class_logits")

    def _task(self, kind: str) -> Task | None:
        """A registered task with this output kind (None for class logits: the default)."""
        if kind == "class_logits":
            return None
        for record in get_registry().list("task"):
            if record.cls.output_kind == kind:
                task: Task = record.cls()
                return task
        pytest.fail(f"no registered task has output kind {kind!r}")

    def _batch(
        self, loss: LossStrategy, labeled: bool = True, equal: bool = False
    ) -> tuple[ModelOutput, ModelOutput, torch.Tensor, list[torch.Tensor]]:
        """Student and teacher outputs, labels, and the student tensors (grad leaves)."""
        needs = type(loss).needs(loss.params)
        g = torch.Generator().manual_seed(0)
        n = self.batch_size
        t_logits = torch.randn(n, self.num_classes, generator=g) * 2
        t_feats: dict[str, torch.Tensor] = {}
        s_feats: dict[str, torch.Tensor] = {}
        if needs.features:
            t_feats = {k: torch.randn(n, *v, generator=g) for k, v in self.teacher_features.items()}
            if equal:
                s_feats = {k: v.clone() for k, v in t_feats.items()}
            else:
                s_feats = {
                    k: torch.randn(n, *v, generator=g) for k, v in self.student_features.items()
                }
        kind = self._kind(loss)
        if kind == "token_logits":
            # Four positions per row; the last is padding (-2), as is the second of row 0.
            t_logits = torch.randn(n, 4, self.num_classes, generator=g) * 2
        shape = tuple(t_logits.shape)
        s_logits = t_logits.clone() if equal else torch.randn(*shape, generator=g)
        if kind == "token_logits":
            labels = torch.randint(0, self.num_classes, (n, 4), generator=g)
            labels[:, -1] = NOT_A_WORD
            labels[0, 1] = NOT_A_WORD
            labels[::3] = labels[::3].clamp_max(UNLABELED)
            if not labeled:
                labels = labels.clamp_max(UNLABELED)
        elif kind == "class_logits":
            labels = torch.randint(0, self.num_classes, (n,), generator=g)
            labels[::3] = UNLABELED
            if not labeled:
                labels[:] = UNLABELED
        else:
            if kind == "label_logits":
                labels = torch.randint(0, 2, (n, self.num_classes), generator=g).float()
            else:
                labels = torch.randn(n, self.num_classes, generator=g)
            labels[::3] = float("nan")
            if not labeled:
                labels[:] = float("nan")
        leaves = [s_logits, *s_feats.values()]
        for leaf in leaves:
            leaf.requires_grad_(True)
        student = ModelOutput(s_logits, s_feats)
        teacher = ModelOutput(t_logits if needs.logits else None, t_feats)
        return student, teacher, labels, leaves

    def _fresh(
        self,
        plugin: LossStrategy,
        hparams: dict[str, float] | None,
        student: ModelOutput,
        teacher: ModelOutput,
    ) -> LossStrategy:
        """A new loss with ``hparams``, bound like the trainer binds it."""
        loss = type(plugin)(plugin.params, hparams)
        loss.task = self._task(self._kind(plugin))
        loss.bind(detached(student), detached(teacher))
        return loss

    def _run(
        self, loss: LossStrategy, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        result = loss(student, teacher, labels)
        assert isinstance(result, LossResult)
        assert result.total.dim() == 0, "total must be a scalar"
        assert bool(torch.isfinite(result.total)), f"loss is {float(result.total.detach())}"
        for key, value in result.parts.items():
            assert isinstance(value, float) and math.isfinite(value), f"part {key}={value!r}"
        return result

    def test_hyperparameters_are_well_declared(self, plugin: LossStrategy) -> None:
        declared = self._declared(plugin)
        names = [hp.name for hp in declared]
        assert len(names) == len(set(names)), f"duplicate hyperparameters: {names}"
        for hp in declared:
            assert isinstance(hp, HParam)
            # Ray nests config keys on '/', so a '/' would split the name apart.
            assert hp.name and "/" not in hp.name and not any(c.isspace() for c in hp.name)
            if hp.default is not None:
                assert hp.low <= hp.default <= hp.high, f"{hp.name}: default outside range"

    def test_finite_with_gradients_across_the_range(self, plugin: LossStrategy) -> None:
        for hparams in settings(self._declared(plugin)):
            student, teacher, labels, leaves = self._batch(plugin)
            loss = self._fresh(plugin, hparams, student, teacher)
            total = self._run(loss, student, teacher, labels).total
            assert total.requires_grad, f"{hparams}: the loss does not depend on the student"
            total.backward()
            grads = [leaf.grad for leaf in leaves if leaf.grad is not None]
            assert grads, f"{hparams}: no gradient reaches the student"
            assert all(bool(torch.isfinite(g).all()) for g in grads), hparams
            assert sum(float(g.abs().sum()) for g in grads) > 0, f"{hparams}: zero gradient"
            learnable = loss.parameters()
            if learnable:
                assert any(p.grad is not None for p in learnable), "loss parameters get no grad"

    def test_unlabeled_rows_are_handled(self, plugin: LossStrategy) -> None:
        student, teacher, labels, leaves = self._batch(plugin, labeled=False)
        loss = self._fresh(plugin, plugin.hparams, student, teacher)
        self._run(loss, student, teacher, labels).total.backward()
        assert all(leaf.grad is None or bool(torch.isfinite(leaf.grad).all()) for leaf in leaves)

    def test_zero_when_student_equals_teacher(self, plugin: LossStrategy) -> None:
        if not self.zero_when_equal:
            pytest.skip("zero_when_equal is False for this loss")
        for hparams in settings(self._declared(plugin)):
            student, teacher, labels, _ = self._batch(plugin, labeled=False, equal=True)
            loss = self._fresh(plugin, hparams, student, teacher)
            total = float(self._run(loss, student, teacher, labels).total.detach())
            assert abs(total) <= self.zero_atol, f"{hparams}: loss {total} with student == teacher"

    def test_gradient_step_reduces_loss(self, plugin: LossStrategy) -> None:
        student, teacher, labels, leaves = self._batch(plugin)
        loss = self._fresh(plugin, plugin.hparams, student, teacher)
        before = self._run(loss, student, teacher, labels).total
        before.backward()
        stepped = [
            (leaf - 1e-2 * leaf.grad).detach() if leaf.grad is not None else leaf.detach()
            for leaf in leaves
        ]
        moved = ModelOutput(stepped[0], dict(zip(student.features, stepped[1:], strict=True)))
        after = self._run(loss, moved, teacher, labels).total
        assert float(after.detach()) < float(before.detach())

    def test_is_deterministic(self, plugin: LossStrategy) -> None:
        student, teacher, labels, _ = self._batch(plugin)
        loss = self._fresh(plugin, plugin.hparams, student, teacher)
        first = self._run(loss, student, teacher, labels).total
        second = self._run(loss, student, teacher, labels).total
        assert float(first.detach()) == float(second.detach())

    def test_class_pickles(self, plugin: LossStrategy) -> None:
        assert pickle.loads(dumps(type(plugin))) is type(plugin)
