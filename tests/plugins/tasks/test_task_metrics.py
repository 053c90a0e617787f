"""The built-in tasks' maths against scikit-learn, and what their ``check`` refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)

from kdforge.data import UNLABELED, DataInfo, DataSplits, Split
from kdforge.errors import DataError
from kdforge.plugins.tasks import _metrics
from kdforge.plugins.tasks.classification import Classification
from kdforge.plugins.tasks.multilabel import Multilabel
from kdforge.plugins.tasks.regression import Destandardize, Regression


def splits_of(
    train: torch.Tensor,
    val: torch.Tensor | None = None,
    test: torch.Tensor | None = None,
    *,
    width: int,
    task: str,
) -> DataSplits:
    """Splits with the given targets (val and test default to the train targets)."""
    val = train.clone() if val is None else val
    test = train.clone() if test is None else test
    info = DataInfo(name="t", input_shape=(2,), num_classes=width, task=task)
    return DataSplits(
        info,
        *(Split(torch.zeros(len(y), 2), y) for y in (train, val, test)),
    )


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- classification -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_accuracy_and_macro_f1_match_sklearn(seed: int) -> None:
    g = generator(seed)
    k = 5
    targets = torch.randint(0, k, (60,), generator=g)
    targets[::7] = UNLABELED
    # Class 4 never occurs among the labels and is rarely predicted: sklearn's macro-F1
    # averages only over the classes present in the truth or the predictions.
    targets[targets == 4] = 3
    outputs = torch.randn(60, k, generator=g)
    outputs[:, 4] -= 3
    got = Classification().metrics(outputs, targets)
    keep = (targets != UNLABELED).numpy()
    truth, predicted = targets.numpy()[keep], outputs.argmax(1).numpy()[keep]
    assert got["acc"] == pytest.approx(accuracy_score(truth, predicted))
    assert got["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_classification_label_loss_ignores_unlabeled_rows() -> None:
    g = generator()
    outputs = torch.randn(8, 3, generator=g)
    targets = torch.tensor([0, 1, 2, -1, 1, -1, 0, 2])
    keep = targets != UNLABELED
    expected = torch.nn.functional.cross_entropy(outputs[keep], targets[keep])
    torch.testing.assert_close(Classification().label_loss(outputs, targets), expected)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (torch.tensor([0.0, 1.0, 2.0]), "not one integer class id"),
        (torch.tensor([[0], [1], [2]]), "not one integer class id"),
        (torch.tensor([0, 1, 2], dtype=torch.int32), "int32"),
        (torch.tensor([0, 1, 3]), "outside 0..2"),
        (torch.tensor([0, -2, 1]), "outside 0..2"),
    ],
)
def test_classification_check_refuses(y: torch.Tensor, message: str) -> None:
    good = torch.tensor([0, 1, 2])
    with pytest.raises(DataError, match=message) as caught:
        Classification().check(splits_of(good, val=y, width=3, task="classification"))
    assert "val split" in str(caught.value)


def test_classification_check_accepts_unlabeled_rows() -> None:
    y = torch.tensor([0, -1, 2, 1])
    Classification().check(splits_of(y, width=3, task="classification"))


# -- multilabel -----------------------------------------------------------------------


def _multilabel_case(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator(seed)
    targets = (torch.rand(50, 4, generator=g) < 0.3).float()
    targets[:, 3] = 0.0  # a label without any positive row
    outputs = torch.randn(50, 4, generator=g) + 2 * targets
    return outputs, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_average_precision_matches_sklearn(seed: int) -> None:
    outputs, targets = _multilabel_case(seed)
    got = Multilabel().metrics(outputs, targets)["map"]
    columns = [c for c in range(targets.shape[1]) if targets[:, c].any()]
    expected = np.mean(
        [average_precision_score(targets[:, c].numpy(), outputs[:, c].numpy()) for c in columns]
    )
    assert got == pytest.approx(expected)


def test_average_precision_handles_tied_scores_like_sklearn() -> None:
    # Rounded scores tie often (as half-precision outputs do): ties form one threshold.
    g = generator(3)
    truth = torch.rand(40, 3, generator=g) < 0.4
    scores = torch.round(torch.randn(40, 3, generator=g) + truth.float(), decimals=0)
    expected = np.mean(
        [average_precision_score(truth[:, c].numpy(), scores[:, c].numpy()) for c in range(3)]
    )
    assert _metrics.average_precision(scores, truth) == pytest.approx(expected)


def test_average_precision_without_positives_is_nan() -> None:
    assert np.isnan(_metrics.average_precision(torch.randn(5, 2), torch.zeros(5, 2, dtype=bool)))


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_f1_matches_sklearn(seed: int) -> None:
    outputs, targets = _multilabel_case(seed)
    got = Multilabel().metrics(outputs, targets)
    truth, predicted = targets.numpy().astype(int), (outputs > 0).numpy().astype(int)
    assert got["micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert got["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, average="macro", zero_division=1)
    )


def test_multilabel_metrics_score_each_label_on_its_known_cells() -> None:
    outputs, targets = _multilabel_case(0)
    holed = targets.clone()
    holed[:10, 1] = float("nan")  # rows 0-9 still count for the other labels
    got = Multilabel().metrics(outputs, holed)
    rows = [slice(None), slice(10, None), *[slice(None)] * (targets.shape[1] - 2)]
    precisions = [
        average_precision_score(targets[r, c].numpy(), outputs[r, c].numpy())
        for c, r in enumerate(rows)
        if targets[r, c].sum() > 0
    ]
    assert got["map"] == pytest.approx(float(np.mean(precisions)))
    assert got != Multilabel().metrics(outputs[10:], targets[10:])


def test_regression_metrics_score_each_target_on_its_known_cells() -> None:
    task = Regression()
    task.load_state({"mean": [0.0, 0.0], "std": [1.0, 1.0]})
    generator = torch.Generator().manual_seed(3)
    truth = torch.randn(40, 2, generator=generator)
    predicted = truth + 0.3 * torch.randn(40, 2, generator=generator)
    holed = truth.clone()
    holed[:15, 0] = float("nan")
    got = task.metrics(predicted, holed)
    expected = np.mean(
        [
            r2_score(truth[15:, 0].numpy(), predicted[15:, 0].numpy()),
            r2_score(truth[:, 1].numpy(), predicted[:, 1].numpy()),
        ]
    )
    assert got["r2"] == pytest.approx(float(expected))
    assert bool(task.labeled(holed).all())  # a row with one known target is labeled


def test_multilabel_bce_ignores_nan_cells() -> None:
    outputs, targets = _multilabel_case(1)
    holed = targets.clone()
    holed[::3, 0] = float("nan")
    holed[5] = float("nan")
    known = ~torch.isnan(holed)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(outputs[known], holed[known])
    leaf = outputs.clone().requires_grad_(True)
    loss = Multilabel().label_loss(leaf, holed)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert leaf.grad is not None and bool((leaf.grad[~known] == 0).all())


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (torch.tensor([[0.0, 0.5], [1.0, 0.0]]), "label value 0.5"),
        (torch.tensor([[0.0, 2.0], [1.0, 0.0]]), "label value 2"),
        (torch.tensor([[0, 1], [1, 0]]), "not float rows of 2"),
        (torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), "not float rows of 2"),
        (torch.tensor([0.0, 1.0]), "not float rows of 2"),
        (torch.tensor([[float("inf"), 1.0], [1.0, 0.0]]), "inf"),
    ],
)
def test_multilabel_check_refuses(y: torch.Tensor, message: str) -> None:
    good = torch.tensor([[0.0, 1.0], [1.0, float("nan")]])
    with pytest.raises(DataError, match=message) as caught:
        Multilabel().check(splits_of(good, test=y, width=2, task="multilabel"))
    assert "test split" in str(caught.value)


# -- regression -----------------------------------------------------------------------


def _regression_case() -> tuple[DataSplits, torch.Tensor]:
    """Off-centre targets of different scales (NaN rows in train) and raw predictions."""
    g = generator()
    scale = torch.tensor([1.0, 50.0, 0.01])
    train = torch.randn(40, 3, generator=g) * scale + torch.tensor([5.0, -300.0, 0.2])
    val = torch.randn(30, 3, generator=g) * scale + torch.tensor([5.0, -300.0, 0.2])
    train[::5] = float("nan")
    predictions = val + torch.randn(30, 3, generator=g) * scale * 0.3
    return splits_of(train, val, width=3, task="regression"), predictions


def test_regression_standardises_on_labeled_train_rows() -> None:
    splits, _ = _regression_case()
    task = Regression()
    task.check(splits)
    prepared = task.prepare(splits)
    y = prepared.train.y[task.labeled(prepared.train.y)]
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    assert bool(torch.isnan(prepared.train.y[::5]).all()), "unlabeled rows stay NaN"


@pytest.mark.parametrize("standardize", [True, False])
def test_regression_metrics_match_sklearn_in_original_units(standardize: bool) -> None:
    splits, predictions = _regression_case()
    task = Regression(Regression.Params(standardize=standardize))
    prepared = task.prepare(splits)
    # The student predicts in training units: the teacher's raw predictions, prepared.
    got = task.metrics(task.prepare_outputs(predictions), prepared.val.y)
    truth, predicted = splits.val.y.numpy(), predictions.numpy()
    assert got["r2"] == pytest.approx(r2_score(truth, predicted), rel=1e-5)
    assert got["rmse"] == pytest.approx(root_mean_squared_error(truth, predicted), rel=1e-5)
    assert got["mae"] == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-5)


def test_r2_of_a_constant_column_is_finite_like_sklearn() -> None:
    truth = torch.tensor([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]], dtype=torch.float64)
    for predicted in (truth.clone(), truth + 0.5):
        expected = r2_score(truth.numpy(), predicted.numpy())
        assert _metrics.r2_score(predicted, truth) == pytest.approx(expected)


def test_destandardize_head_inverts_prepare() -> None:
    splits, predictions = _regression_case()
    task = Regression()
    task.prepare(splits)
    head = task.output_head()
    assert isinstance(head, Destandardize)
    torch.testing.assert_close(head(task.prepare_outputs(predictions)), predictions)
    # A task rebuilt from its state (as in a trial or an export) gives the same head.
    rebuilt = Regression()
    rebuilt.load_state(json.loads(json.dumps(task.state())))
    served = rebuilt.output_head()(task.prepare_outputs(predictions))
    torch.testing.assert_close(served, predictions)


def test_regression_loss_ignores_nan_rows() -> None:
    g = generator()
    outputs = torch.randn(6, 2, generator=g)
    targets = torch.randn(6, 2, generator=g)
    targets[[1, 4]] = float("nan")
    keep = torch.tensor([True, False, True, True, False, True])
    task = Regression()
    expected = torch.nn.functional.mse_loss(outputs[keep], targets[keep])
    torch.testing.assert_close(task.label_loss(outputs, targets), expected)
    huber = Regression(Regression.Params(loss="huber", huber_delta=0.5))
    expected = torch.nn.functional.huber_loss(outputs[keep], targets[keep], delta=0.5)
    torch.testing.assert_close(huber.label_loss(outputs, targets), expected)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (torch.tensor([[1, 2], [3, 4]]), "not float rows of 2"),
        (torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]), "not float rows of 2"),
        (torch.tensor([1.0, 2.0]), "not float rows of 2"),
        (torch.tensor([[1.0, float("inf")], [3.0, 4.0]]), "inf"),
        (torch.tensor([[1.0, -float("inf")], [3.0, 4.0]]), "inf"),
    ],
)
def test_regression_check_refuses(y: torch.Tensor, message: str) -> None:
    good = torch.tensor([[1.0, 2.0], [3.0, float("nan")]])
    with pytest.raises(DataError, match=message) as caught:
        Regression().check(splits_of(good, val=y, width=2, task="regression"))
    assert "val split" in str(caught.value)


def test_regression_check_refuses_a_train_split_without_labels() -> None:
    empty = torch.full((3, 2), float("nan"))
    with pytest.raises(DataError, match="train split has no labeled row"):
        Regression().check(splits_of(empty, torch.ones(3, 2), width=2, task="regression"))


def test_regression_used_before_prepare_says_so() -> None:
    with pytest.raises(DataError, match="before prepare"):
        Regression().metrics(torch.zeros(2, 1), torch.zeros(2, 1))
