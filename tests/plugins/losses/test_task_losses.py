"""Losses follow the task: regression_kd, multilabel_kd, label terms through the task,
output kinds (composite: the intersection of its terms').

Values are checked against the numpy references in ``_reference`` on small tensors;
the tasks are the real built-in plugins.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from kdforge.config import PluginRef
from kdforge.interfaces import OUTPUT_KINDS, LossStrategy, ModelOutput, Task
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.losses.composite import Composite
from kdforge.plugins.losses.fitnets import FitNets
from kdforge.plugins.losses.hinton_kd import HintonKD, labeled_cross_entropy
from kdforge.plugins.losses.logit_mse import LogitMSE
from kdforge.plugins.losses.multilabel_kd import MultilabelKD, label_scales
from kdforge.plugins.losses.regression_kd import RegressionKD
from tests.plugins.losses import _reference as ref

NAN = float("nan")

# 5 rows, 3 targets; row 2 unlabeled (transfer), row 4 partly known.
S = np.array(
    [
        [0.5, -1.0, 0.2],
        [1.5, 0.3, -0.4],
        [-0.7, 0.9, 1.1],
        [0.0, -0.2, 0.6],
        [2.0, 1.0, -1.5],
    ]
)
T = np.array(
    [
        [0.4, -0.8, 0.0],
        [1.0, 0.5, -0.9],
        [-1.5, 2.5, 0.3],
        [0.3, -1.1, 0.5],
        [3.0, -0.5, -2.0],
    ]
)
Y_REAL = np.array(
    [
        [0.6, -0.9, 0.1],
        [2.0, 0.0, -1.0],
        [NAN, NAN, NAN],
        [-0.5, 0.4, 0.8],
        [1.0, NAN, -1.8],
    ]
)
Y_BINARY = np.array(
    [
        [1.0, 0.0, 1.0],
        [1.0, 1.0, 0.0],
        [NAN, NAN, NAN],
        [0.0, 0.0, 1.0],
        [1.0, NAN, 0.0],
    ]
)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


def task(name: str, **params: Any) -> Task:
    """The real built-in task plugin (regression with unit statistics loaded)."""
    built: Task = instantiate("task", PluginRef(name=name, params=params), "task")
    if name == "regression":
        built.load_state({"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]})
    return built


def run(
    loss: LossStrategy, s: np.ndarray, t: np.ndarray, y: np.ndarray, grad: bool = False
) -> tuple[float, torch.Tensor]:
    """Bind on the batch, compute the loss; returns its value and the student leaf."""
    student_logits = _t(s).requires_grad_(grad)
    student, teacher = ModelOutput(student_logits), ModelOutput(_t(t))
    loss.bind(ModelOutput(student_logits.detach()), teacher)
    result = loss(student, teacher, _t(y))
    if grad:
        result.total.backward()
    return float(result.total.detach()), student_logits


# ---------------------------------------------------------------- regression_kd


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_regression_kd_matches_the_reference(alpha: float) -> None:
    loss = RegressionKD(hparams={"alpha": alpha})
    loss.task = task("regression")
    value, _ = run(loss, S, T, Y_REAL)
    assert value == pytest.approx(ref.regression_kd(S, T, Y_REAL, alpha), rel=1e-12)


@pytest.mark.parametrize("margin", [0.0, 0.5, 1.0])
def test_teacher_bounded_regression_matches_chen_et_al(margin: float) -> None:
    params = RegressionKD.Params.model_validate({"teacher_bound": True})
    loss = RegressionKD(params, {"alpha": 0.3, "margin": margin})
    loss.task = task("regression")
    value, _ = run(loss, S, T, Y_REAL)
    assert value == pytest.approx(ref.regression_kd(S, T, Y_REAL, 0.3, margin), rel=1e-12)


def test_teacher_bound_drops_rows_where_the_student_beats_the_teacher() -> None:
    """Row 0: the student is closer to the label than the teacher; row 1: farther."""
    s = np.array([[1.0], [3.0]])
    t = np.array([[0.0], [2.0]])
    y = np.array([[1.0], [2.0]])
    params = RegressionKD.Params.model_validate({"teacher_bound": True})
    loss = RegressionKD(params, {"alpha": 0.0, "margin": 0.0})
    loss.task = task("regression")
    value, leaf = run(loss, s, t, y, grad=True)
    # Row 0 counts nothing (0 + 0 > 1 is false) but still counts in the mean; row 1
    # counts its full squared error 1 (1 + 0 > 0).
    assert value == pytest.approx(0.5)
    assert leaf.grad is not None
    assert float(leaf.grad[0, 0]) == 0.0 and float(leaf.grad[1, 0]) != 0.0
    # A margin of 2 asks the student to beat the teacher by 2: row 0 (1 better) counts.
    loss = RegressionKD(params, {"alpha": 0.0, "margin": 2.0})
    loss.task = task("regression")
    assert run(loss, s, t, y)[0] == pytest.approx(0.5)


def test_regression_kd_declares_margin_only_with_the_teacher_bound() -> None:
    plain = [hp.name for hp in RegressionKD.declared_hyperparameters(RegressionKD.Params())]
    bounded = RegressionKD.declared_hyperparameters(
        RegressionKD.Params.model_validate({"teacher_bound": True})
    )
    assert plain == ["alpha"]
    assert [hp.name for hp in bounded] == ["alpha", "margin"]


def test_regression_kd_alpha_zero_is_the_tasks_label_loss() -> None:
    huber = task("regression", loss="huber", huber_delta=0.5)
    loss = RegressionKD(hparams={"alpha": 0.0})
    loss.task = huber
    value, _ = run(loss, S, T, Y_REAL)
    assert value == pytest.approx(float(huber.label_loss(_t(S), _t(Y_REAL))), rel=1e-12)


def test_regression_kd_unlabeled_rows_enter_only_the_teacher_term() -> None:
    loss = RegressionKD(hparams={"alpha": 0.4})
    loss.task = task("regression")
    _, leaf = run(loss, S, T, Y_REAL, grad=True)
    assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all())
    # Row 2 has no label: its gradient is the teacher term's alone.
    expected = 0.4 * 2 * (_t(S)[2] - _t(T)[2]) / S.size
    torch.testing.assert_close(leaf.grad[2], expected)
    # With no label at all the loss is the teacher term, finite.
    unlabeled = np.full_like(Y_REAL, NAN)
    assert run(loss, S, T, unlabeled)[0] == pytest.approx(0.4 * ((S - T) ** 2).mean())


def test_regression_kd_without_a_task_uses_mse_on_known_cells() -> None:
    value, _ = run(RegressionKD(hparams={"alpha": 0.2}), S, T, Y_REAL)
    assert value == pytest.approx(ref.regression_kd(S, T, Y_REAL, 0.2), rel=1e-12)


# ---------------------------------------------------------------- multilabel_kd


def test_label_temperatures_follow_the_teachers_spread() -> None:
    temps = 2.0 * label_scales(_t(T))
    assert temps.tolist() == pytest.approx(ref.label_temperatures(T, 2.0), rel=1e-6)
    # The label whose logits spread widest gets the highest temperature, within 2x.
    assert int(temps.argmax()) == int(np.argmax(T.std(axis=0)))
    assert float(temps.max()) <= 4.0 and float(temps.min()) >= 1.0


def test_label_temperatures_are_clamped_and_safe_on_constant_logits() -> None:
    wide = np.array([[0.0, 0.0, -50.0], [0.01, 1.0, 50.0], [0.0, 2.0, 0.0]])
    assert label_scales(_t(wide)).tolist() == [0.5, 1.0, 2.0]
    assert label_scales(torch.zeros(4, 3)).tolist() == [1.0, 1.0, 1.0]
    assert label_scales(torch.randn(1, 3)).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(("temperature", "alpha"), [(1.0, 0.5), (2.0, 1.0), (7.0, 0.2)])
def test_multilabel_kd_matches_the_reference(temperature: float, alpha: float) -> None:
    loss = MultilabelKD(hparams={"temperature": temperature, "alpha": alpha})
    loss.task = task("multilabel")
    value, _ = run(loss, S, T, Y_BINARY)
    temps = ref.label_temperatures(T, temperature)
    assert value == pytest.approx(ref.multilabel_kd(S, T, Y_BINARY, temps, alpha), rel=1e-9)


def test_multilabel_kd_temperatures_are_fixed_at_bind() -> None:
    loss = MultilabelKD(hparams={"temperature": 3.0, "alpha": 1.0})
    loss.task = task("multilabel")
    first, _ = run(loss, S, T, Y_BINARY)
    bound = loss.temperatures
    assert bound is not None
    # Another batch neither rebinds nor changes them; a fresh loss on the same batch
    # gets the same ones.
    loss.bind(ModelOutput(_t(S)), ModelOutput(_t(T) * 10))
    assert loss.temperatures is bound
    again = MultilabelKD(hparams={"temperature": 3.0, "alpha": 1.0})
    again.bind(ModelOutput(_t(S)), ModelOutput(_t(T)))
    assert again.temperatures is not None
    assert torch.equal(again.temperatures, bound)
    assert run(again, S, T, Y_BINARY)[0] == first


def test_multilabel_kd_is_zero_when_the_student_equals_the_teacher() -> None:
    loss = MultilabelKD(hparams={"temperature": 2.0, "alpha": 1.0})
    loss.task = task("multilabel")
    assert run(loss, T, T, Y_BINARY)[0] == pytest.approx(0.0, abs=1e-12)


def test_multilabel_kd_alpha_zero_is_the_tasks_label_loss() -> None:
    multilabel = task("multilabel")
    loss = MultilabelKD(hparams={"temperature": 2.0, "alpha": 0.0})
    loss.task = multilabel
    value, _ = run(loss, S, T, Y_BINARY)
    assert value == pytest.approx(float(multilabel.label_loss(_t(S), _t(Y_BINARY))), rel=1e-12)
    assert value == pytest.approx(ref.masked_bce(S, Y_BINARY), rel=1e-12)


def test_multilabel_kd_gradients_and_unlabeled_rows() -> None:
    loss = MultilabelKD(hparams={"temperature": 2.0, "alpha": 0.5})
    loss.task = task("multilabel")
    _, leaf = run(loss, S, T, Y_BINARY, grad=True)
    assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all())
    assert float(leaf.grad.abs().sum()) > 0
    # Row 2 (no labels) gets the soft term's gradient only: (q - p) / T_l * T_l^2 / cells.
    temps = torch.tensor(ref.label_temperatures(T, 2.0), dtype=torch.float64)
    q, p = torch.sigmoid(_t(S)[2] / temps), torch.sigmoid(_t(T)[2] / temps)
    torch.testing.assert_close(leaf.grad[2], 0.5 * (q - p) * temps / S.size)
    unlabeled = np.full_like(Y_BINARY, NAN)
    value, _ = run(MultilabelKD(hparams={"temperature": 2.0, "alpha": 0.5}), S, T, unlabeled)
    assert math.isfinite(value)


def test_multilabel_kd_without_a_task_uses_bce_on_known_cells() -> None:
    value, _ = run(MultilabelKD(hparams={"temperature": 2.0, "alpha": 0.0}), S, T, Y_BINARY)
    assert value == pytest.approx(ref.masked_bce(S, Y_BINARY), rel=1e-12)


# ---------------------------------------------------------------- label terms follow the task


def test_logit_mse_label_term_is_the_tasks() -> None:
    for name, y, label in (
        ("regression", Y_REAL, ref.masked_mse(S, Y_REAL)),
        ("multilabel", Y_BINARY, ref.masked_bce(S, Y_BINARY)),
    ):
        loss = LogitMSE(hparams={"alpha": 0.25})
        loss.task = task(name)
        value, _ = run(loss, S, T, y)
        kd = float(((S - T) ** 2).mean())
        assert value == pytest.approx(0.75 * label + 0.25 * kd, rel=1e-12), name


def test_classification_label_terms_are_unchanged() -> None:
    """Without a task (and with the classification task) the hard term is the old CE."""
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3, -1, 2, 1, -1])
    old = labeled_cross_entropy(logits, labels)
    assert torch.equal(HintonKD().label_loss(logits, labels), old)
    loss = HintonKD()
    loss.task = task("classification")
    assert torch.allclose(loss.label_loss(logits, labels), old)


def test_feature_loss_label_term_is_the_tasks() -> None:
    feats = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    loss = FitNets(hparams={"hint_weight": 1.0})
    loss.task = task("regression")
    student = ModelOutput(_t(S), {"h": feats.double()})
    teacher = ModelOutput(None, {"h": feats.double()})
    result = loss(student, teacher, _t(Y_REAL))
    assert result.parts["ce"] == pytest.approx(ref.masked_mse(S, Y_REAL), rel=1e-12)
    assert float(result.total) == pytest.approx(ref.masked_mse(S, Y_REAL), rel=1e-12)


# ---------------------------------------------------------------- output kinds


def test_builtin_losses_declare_their_output_kinds() -> None:
    every = frozenset(OUTPUT_KINDS)
    expected = {
        "hinton_kd": {"class_logits", "token_logits"},
        "dkd": {"class_logits"},
        "logit_mse": every,
        "fitnets": every,
        "attention_transfer": every,
        "rkd": every,
        "cosine_embedding": every,
        "regression_kd": {"values"},
        "multilabel_kd": {"label_logits"},
    }
    for name, kinds in expected.items():
        cls = get_registry().get("loss", name).cls
        assert cls.supported_output_kinds(cls.Params()) == kinds, name


def _composite(*names: str) -> Any:
    return Composite.Params.model_validate({"terms": [{"name": n} for n in names]})


def test_composite_takes_the_intersection_of_its_terms_kinds() -> None:
    assert Composite.supported_output_kinds(_composite("hinton_kd", "fitnets")) == {
        "class_logits",
        "token_logits",
    }
    assert Composite.supported_output_kinds(_composite("regression_kd", "rkd")) == {"values"}
    assert Composite.supported_output_kinds(_composite("logit_mse", "fitnets")) == frozenset(
        OUTPUT_KINDS
    )
    assert Composite.supported_output_kinds(_composite("hinton_kd", "regression_kd")) == set()


def test_composite_passes_the_task_to_its_terms() -> None:
    params = _composite("regression_kd", "logit_mse")
    loss = Composite(params, {"regression_kd.alpha": 0.5, "logit_mse.alpha": 0.5})
    loss.task = task("regression")
    value, _ = run(loss, S, T, Y_REAL)
    label, kd = ref.masked_mse(S, Y_REAL), float(((S - T) ** 2).mean())
    assert all(term.task is loss.task for _, _, term in loss.terms)
    assert value == pytest.approx(2 * (0.5 * label + 0.5 * kd), rel=1e-12)
