"""check_loss_fits_task: a loss that cannot read a task's outputs is refused before training,
with a message naming the loss, the task and its output kind, and a hint of losses that fit."""

from __future__ import annotations

import pytest

from kdforge.config import PluginRef
from kdforge.errors import ConfigError
from kdforge.interfaces import Task
from kdforge.plugin_host.resolve import check_loss_fits_task, instantiate


def _task(name: str) -> Task:
    task: Task = instantiate("task", PluginRef(name=name), "task")
    return task


def test_dkd_does_not_fit_regression() -> None:
    with pytest.raises(ConfigError) as caught:
        check_loss_fits_task("dkd", None, _task("regression"))
    message = str(caught.value)
    assert "loss 'dkd' does not fit task 'regression'" in message
    assert "per-class logits" in message and "real-valued predictions" in message
    assert "'values'" in message
    hint = caught.value.hint or ""
    assert hint.startswith("losses for regression: regression_kd, ")
    listed = hint.split(": ", 1)[1].split(", ")
    assert {"logit_mse", "fitnets", "rkd", "cosine_embedding", "composite"} <= set(listed)
    assert not {"dkd", "hinton_kd", "multilabel_kd"} & set(listed)


def test_hinton_kd_does_not_fit_multilabel() -> None:
    with pytest.raises(ConfigError, match="loss 'hinton_kd' does not fit task 'multilabel'") as e:
        check_loss_fits_task("hinton_kd", {}, "multilabel")
    assert "per-label logits" in str(e.value) and "'label_logits'" in str(e.value)
    assert (e.value.hint or "").startswith("losses for multilabel: multilabel_kd, ")


@pytest.mark.parametrize(
    ("loss", "task"),
    [
        ("logit_mse", "regression"),
        ("logit_mse", "multilabel"),
        ("regression_kd", "regression"),
        ("multilabel_kd", "multilabel"),
        ("hinton_kd", "classification"),
        ("fitnets", "regression"),
    ],
)
def test_fitting_losses_pass(loss: str, task: str) -> None:
    check_loss_fits_task(loss, None, _task(task))


def test_composite_fits_what_all_its_terms_take() -> None:
    mixed = {"terms": [{"name": "fitnets"}, {"name": "hinton_kd"}]}
    check_loss_fits_task("composite", mixed, "classification")
    with pytest.raises(ConfigError, match="does not fit task 'regression'"):
        check_loss_fits_task("composite", mixed, "regression")
    clash = {"terms": [{"name": "regression_kd"}, {"name": "hinton_kd"}]}
    with pytest.raises(ConfigError, match="parts have none in common"):
        check_loss_fits_task("composite", clash, "regression")
