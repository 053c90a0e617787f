"""The trainer: learns, keeps the best-validation weights, stops on divergence."""

from __future__ import annotations

import pytest
import torch

from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.training.evaluate import evaluate
from kdforge.training.trainer import TrainingDiverged, TrainSettings, train_model


def _blobs(n: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    x = centers[y] + torch.randn(n, 2, generator=g) * 0.5
    return x, y


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def test_training_from_scratch_learns_separable_data() -> None:
    x, y = _blobs()
    vx, vy = _blobs(seed=1)
    model = _model()
    before, _ = evaluate(model, vx, vy)
    result = train_model(
        model, x=x, y=y, val_x=vx, val_y=vy, settings=TrainSettings(epochs=10, lr=0.05)
    )
    after, _ = evaluate(model, vx, vy)
    assert after > 0.95 > before
    assert result.best_val_acc == pytest.approx(after)
    assert [r.epoch for r in result.history] == list(range(1, 11))


def test_distillation_uses_teacher_logits_and_unlabeled_rows() -> None:
    x, y = _blobs()
    vx, vy = _blobs(seed=1)
    teacher_logits = torch.nn.functional.one_hot(y, 3).float() * 10
    labels = y.clone()
    labels[100:] = -1
    model = _model()
    loss = HintonKD(hparams={"temperature": 2.0, "alpha": 0.9})
    result = train_model(
        model,
        x=x,
        y=labels,
        val_x=vx,
        val_y=vy,
        settings=TrainSettings(epochs=10, lr=0.05),
        loss=loss,
        teacher_logits=teacher_logits,
    )
    assert result.best_val_acc > 0.95
    assert set(result.history[0].parts) == {"kd", "ce"}


def test_on_epoch_can_stop_training() -> None:
    x, y = _blobs()
    result = train_model(
        _model(),
        x=x,
        y=y,
        val_x=x,
        val_y=y,
        settings=TrainSettings(epochs=10, lr=0.01),
        on_epoch=lambda r: r.epoch >= 3,
    )
    assert result.epochs_run == 3


def test_divergence_is_reported() -> None:
    x, y = _blobs()
    x[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="became nan"):
        train_model(
            _model(),
            x=x,
            y=y,
            val_x=x,
            val_y=y,
            settings=TrainSettings(epochs=2, lr=0.01, batch_size=512),
        )


def test_same_seed_same_weights() -> None:
    x, y = _blobs()
    outs = []
    for _ in range(2):
        model = _model()
        train_model(
            model, x=x, y=y, val_x=x, val_y=y, settings=TrainSettings(epochs=2, lr=0.01, seed=3)
        )
        outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1])


def test_adamw_is_fused_on_cpu_and_makes_the_same_update() -> None:
    from kdforge.training.trainer import make_optimizer

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    twin = torch.nn.Linear(6, 3)
    twin.load_state_dict(model.state_dict())
    fused = make_optimizer(list(model.parameters()), 1e-2, 1e-4)
    assert fused.defaults["fused"] is True  # one kernel per step, not a loop over params
    plain = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=1e-4)
    x = torch.randn(8, 6)
    for _ in range(3):
        for net, opt in ((model, fused), (twin, plain)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adamw_falls_back_where_torch_cannot_fuse() -> None:
    from kdforge.training.trainer import make_optimizer

    meta = torch.nn.Parameter(torch.empty(3, device="meta"))  # no fused kernel there
    assert make_optimizer([meta], 1e-3, 0.0).defaults["fused"] is None


def _diverged(x, y, lr: float, loss=None, teacher=None, epochs: int = 2) -> str:
    with pytest.raises(TrainingDiverged) as caught:
        train_model(
            _model(),
            x=x,
            y=y,
            val_x=x,
            val_y=y,
            settings=TrainSettings(epochs=epochs, lr=lr, batch_size=512),
            loss=loss,
            teacher_logits=teacher,
        )
    return str(caught.value)


class _BrokenLoss(HintonKD):
    """A loss that returns NaN on finite outputs: its own fault, whatever the lr."""

    def __call__(self, student, teacher, labels):  # type: ignore[no-untyped-def]
        result = super().__call__(student, teacher, labels)
        return type(result)(result.total * float("nan"), result.parts)


@pytest.mark.parametrize("lr", [1e-6, 1e-2])
def test_the_hint_names_the_cause_not_the_lr(lr: float) -> None:
    x, y = _blobs()
    bad_inputs = x.clone()
    bad_inputs[0, 0] = float("nan")
    text = _diverged(bad_inputs, y, lr)
    assert "inputs contain NaN" in text and "learning-rate" not in text
    teacher = torch.randn(len(x), int(y.max()) + 1)
    loss = _BrokenLoss(hparams={"temperature": 2.0, "alpha": 0.5})
    text = _diverged(x, y, lr, loss=loss, teacher=teacher)
    assert "the loss itself" in text and "before any update" in text
    assert "lower the learning-rate" not in text
    bad_teacher = teacher.clone()
    bad_teacher[3] = float("nan")
    text = _diverged(x, y, lr, loss=HintonKD(hparams={}), teacher=bad_teacher)
    assert "teacher's outputs" in text and "learning-rate" not in text


def test_divergence_after_training_went_on_suggests_a_lower_lr() -> None:
    x, y = _blobs()
    text = _diverged(x * 1e3, y, lr=1e6, epochs=30)
    assert "lower the learning-rate range" in text and "step 1," not in text
