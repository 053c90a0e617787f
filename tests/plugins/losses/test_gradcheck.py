"""``torch.autograd.gradcheck`` (float64) of every built-in loss w.r.t. the student."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kdforge.interfaces import LossStrategy, ModelOutput
from kdforge.plugins.losses.attention_transfer import AttentionTransfer
from kdforge.plugins.losses.composite import Composite
from kdforge.plugins.losses.cosine_embedding import CosineEmbedding
from kdforge.plugins.losses.dkd import DKD
from kdforge.plugins.losses.fitnets import FitNets
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.losses.logit_mse import LogitMSE
from kdforge.plugins.losses.rkd import RKD

N, C = 5, 4
LABELS = torch.tensor([0, 3, -1, 2, 1])


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _composite() -> LossStrategy:
    params = Composite.Params.model_validate(
        {"terms": [{"name": "hinton_kd", "weight": 0.5}, {"name": "fitnets", "weight": 2.0}]}
    )
    return Composite(params)


CASES: dict[str, tuple[Callable[[], LossStrategy], tuple[int, ...], tuple[int, ...]]] = {
    # name: (loss factory, student feature shape, teacher feature shape)
    "hinton_kd": (lambda: HintonKD(hparams={"temperature": 3.0, "alpha": 0.5}), (3,), (3,)),
    "logit_mse": (lambda: LogitMSE(hparams={"alpha": 0.6}), (3,), (3,)),
    "fitnets": (lambda: FitNets(), (3,), (6,)),  # with a linear adapter
    "fitnets_conv": (lambda: FitNets(), (2, 4, 4), (3, 2, 2)),  # 1x1 conv + pooling
    "attention_transfer": (lambda: AttentionTransfer(), (2, 4, 4), (3, 2, 2)),
    "rkd": (lambda: RKD(), (3,), (6,)),
    "dkd": (lambda: DKD(hparams={"temperature": 2.0, "alpha": 1.0, "beta": 4.0}), (3,), (3,)),
    "cosine_embedding": (lambda: CosineEmbedding(), (3,), (6,)),
    "composite": (_composite, (3,), (6,)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck(case: str) -> None:
    factory, s_shape, t_shape = CASES[case]
    torch.manual_seed(0)
    loss = factory()
    logits = _randn(N, C, seed=1).requires_grad_(True)
    feature = _randn(N, *s_shape, seed=2).requires_grad_(True)
    teacher = ModelOutput(_randn(N, C, seed=3) * 2, {"t": _randn(N, *t_shape, seed=4)})
    loss.bind(ModelOutput(logits.detach(), {"s": feature.detach()}), teacher)
    for p in loss.parameters():
        p.data = p.data.double()

    def fn(s_logits: torch.Tensor, s_feature: torch.Tensor) -> torch.Tensor:
        return loss(ModelOutput(s_logits, {"s": s_feature}), teacher, LABELS).total

    assert torch.autograd.gradcheck(fn, (logits, feature), eps=1e-6, atol=1e-5)
