"""``hinton_kd`` behaves as Hinton et al. (2015) say: T=1 KL, high-T limit, T^2 scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdforge.interfaces import ModelOutput
from kdforge.plugins.losses.hinton_kd import HintonKD, soft_target_kl
from tests.plugins.losses import _reference as ref

S = torch.tensor([[1.0, -0.5, 0.3, 2.0, -1.2], [0.2, 0.1, -0.7, 0.4, 1.5]], dtype=torch.float64)
T = torch.tensor([[2.0, -1.0, 0.1, 3.0, -2.0], [0.0, 0.4, -1.5, 1.2, 2.5]], dtype=torch.float64)
UNLABELED = torch.tensor([-1, -1])


def _soft_grad(temperature: float, scaled: bool) -> torch.Tensor:
    student = S.clone().requires_grad_(True)
    if scaled:
        value = HintonKD(hparams={"temperature": temperature, "alpha": 1.0})(
            ModelOutput(student), ModelOutput(T), UNLABELED
        ).total
    else:
        value = soft_target_kl(student, T, temperature)
    (grad,) = torch.autograd.grad(value, student)
    return grad


def test_t1_alpha1_is_the_plain_softmax_kl() -> None:
    got = HintonKD(hparams={"temperature": 1.0, "alpha": 1.0})(
        ModelOutput(S), ModelOutput(T), UNLABELED
    ).total
    p_t, log_p_s = F.softmax(T, dim=1), F.log_softmax(S, dim=1)
    plain = float((p_t * (p_t.log() - log_p_s)).sum(1).mean())
    assert float(got) == pytest.approx(plain, rel=1e-12)
    numpy_kl = np.mean(
        [ref.kl(ref.softmax(t), ref.softmax(s)) for s, t in zip(S.numpy(), T.numpy(), strict=True)]
    )
    assert float(got) == pytest.approx(numpy_kl, rel=1e-10)


def test_large_temperature_drives_soft_targets_to_uniform() -> None:
    uniform = np.full(5, 0.2)
    gaps = [ref.kl(uniform, ref.softmax(T[0].numpy() / temp)) for temp in (1, 4, 20, 1000)]
    assert gaps == sorted(gaps, reverse=True), "soft targets must flatten as T grows"
    assert gaps[-1] < 1e-5
    # Which means the unscaled soft loss itself vanishes as T grows.
    assert float(soft_target_kl(S, T, 1000.0)) < 1e-5


def test_unscaled_gradients_shrink_as_one_over_t_squared() -> None:
    g10, g20 = _soft_grad(10.0, scaled=False), _soft_grad(20.0, scaled=False)
    ratio = float(g10.norm() / g20.norm())
    assert ratio == pytest.approx(4.0, rel=0.05)


def test_t_squared_scaling_keeps_gradients_on_one_scale() -> None:
    # With the T^2 factor the gradient tends to (z_s - z_t)/C per row (batch-averaged),
    # Hinton's high-temperature limit for zero-mean logits, so it no longer depends on T.
    g10, g100, g1000 = (_soft_grad(t, scaled=True) for t in (10.0, 100.0, 1000.0))
    assert float(g100.norm() / g1000.norm()) == pytest.approx(1.0, rel=0.01)
    assert float(g10.norm() / g1000.norm()) == pytest.approx(1.0, rel=0.2)
    centred = (S - S.mean(1, keepdim=True)) - (T - T.mean(1, keepdim=True))
    limit = centred / (S.shape[1] * S.shape[0])
    # The remaining gap is O(1/T): it shrinks tenfold from T=100 to T=1000.
    gap100, gap1000 = float((g100 - limit).norm()), float((g1000 - limit).norm())
    assert gap1000 / float(limit.norm()) < 0.01
    assert gap1000 < gap100 / 5


def test_alpha_zero_is_cross_entropy_on_labeled_rows() -> None:
    labels = torch.tensor([3, -1])
    got = HintonKD(hparams={"temperature": 4.0, "alpha": 0.0})(
        ModelOutput(S), ModelOutput(T), labels
    ).total
    assert float(got) == pytest.approx(-math.log(float(F.softmax(S[0], 0)[3])), rel=1e-12)
