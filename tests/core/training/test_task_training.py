"""The trainer follows the task: label loss, metric, best epoch in the metric's direction."""

from __future__ import annotations

import pytest
import torch

from kdforge.config import PluginRef
from kdforge.data import DataInfo, DataSplits, Split
from kdforge.errors import ConfigError
from kdforge.plugin_host.resolve import instantiate
from kdforge.training.evaluate import evaluate
from kdforge.training.supported_tasks import require_workflow_task
from kdforge.training.trainer import TrainResult, TrainSettings, train_model


def _regression_splits(n: int = 600) -> DataSplits:
    """``y = 300 + 100 * (3 x0 - 2 x1) + noise`` in two targets (the second is -y)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator)
    y = 300 + 100 * (3 * x[:, :1] - 2 * x[:, 1:2]) + torch.randn(n, 1, generator=generator)
    y = torch.cat([y, -y], dim=1)
    y[:20] = float("nan")  # unlabeled rows train on nothing and score nothing
    info = DataInfo("line", (4,), 2, task="regression", class_names=("y", "minus_y"))
    return DataSplits(
        info, Split(x[:400], y[:400]), Split(x[400:500], y[400:500]), Split(x[500:], y[500:])
    )


def _multilabel_splits(n: int = 600) -> DataSplits:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=generator)
    y = torch.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] > 1], dim=1).float()
    info = DataInfo("tags", (6,), 3, task="multilabel")
    return DataSplits(
        info, Split(x[:400], y[:400]), Split(x[400:500], y[400:500]), Split(x[500:], y[500:])
    )


def _model(info: DataInfo) -> torch.nn.Module:
    torch.manual_seed(0)
    space = instantiate("search_space", PluginRef(name="mlp"), "student")
    return space.build({"depth": 1, "width_0": 32, "dropout": 0.0}, info)


def _train(model: torch.nn.Module, splits: DataSplits, task, epochs: int) -> TrainResult:
    return train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=epochs, lr=1e-2, seed=0),
        task=task,
    )


def test_regression_trains_on_standardised_targets_and_scores_in_their_units() -> None:
    task = instantiate("task", PluginRef(name="regression"), "task")
    raw = _regression_splits()
    task.check(raw)
    splits = task.prepare(raw)
    model = _model(splits.info)
    result = _train(model, splits, task, 30)
    r2, loss = evaluate(model, splits.test.x, splits.test.y, task)
    assert r2 > 0.95 and loss < 0.05
    assert result.best_val_acc == max(report.val_acc for report in result.history)
    metrics = task.metrics(model(splits.test.x).detach(), splits.test.y)
    # RMSE in the data's units (targets spread ~360), not in standard deviations.
    assert 1.0 < metrics["rmse"] < 0.25 * float(raw.test.y[:, 0].std())
    head = task.output_head()
    served = head(model(raw.test.x)).detach()
    assert float((served - raw.test.y).abs().mean()) == pytest.approx(metrics["mae"], rel=1e-4)


def test_multilabel_trains_with_bce_and_picks_the_best_map() -> None:
    task = instantiate("task", PluginRef(name="multilabel"), "task")
    splits = _multilabel_splits()
    task.check(splits)
    model = _model(splits.info)
    result = _train(model, splits, task, 20)
    assert result.best_val_acc == max(report.val_acc for report in result.history)
    test_map, _ = evaluate(model, splits.test.x, splits.test.y, task)
    assert test_map > 0.9


def test_a_lower_is_better_metric_keeps_its_lowest_epoch() -> None:
    base = instantiate("task", PluginRef(name="regression"), "task")

    class Rmse(type(base)):  # type: ignore[misc]
        metric = "rmse"
        higher_is_better = False

    task = Rmse()
    splits = task.prepare(_regression_splits())
    model = _model(splits.info)
    result = _train(model, splits, task, 8)
    assert result.best_val_acc == min(report.val_acc for report in result.history)
    assert task.better(1.0, 2.0) and not task.better(float("nan"), 2.0)


def test_classification_task_trains_exactly_as_without_one() -> None:
    from kdforge.plugins.datasets.digits import Digits

    splits = Digits().load(0)
    task = instantiate("task", PluginRef(name="classification"), "task")
    results = []
    for given in (None, task):
        model = _model(splits.info)
        _train(model, splits, given, 2)
        results.append(evaluate(model, splits.test.x, splits.test.y, given))
    assert results[0] == results[1]


def test_the_workflow_refuses_a_task_whose_outputs_it_does_not_handle() -> None:
    task = instantiate("task", PluginRef(name="regression"), "task")
    require_workflow_task(task, "houses", "kdforge search")

    require_workflow_task(
        instantiate("task", PluginRef(name="token_classification"), "t"), "ner", "x"
    )

    class PerSpan(type(task)):  # type: ignore[misc]
        output_kind = "span_logits"

    with pytest.raises(ConfigError, match=r"kind 'span_logits'.*handles class_logits"):
        require_workflow_task(PerSpan(), "ner", "kdforge search")
