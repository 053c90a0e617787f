"""Each built-in loss equals an independent numpy computation of its paper's formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdforge.interfaces import ModelOutput
from kdforge.plugins.losses.attention_transfer import AttentionTransfer
from kdforge.plugins.losses.composite import Composite
from kdforge.plugins.losses.cosine_embedding import CosineEmbedding
from kdforge.plugins.losses.dkd import DKD
from kdforge.plugins.losses.fitnets import FitNets
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.losses.logit_mse import LogitMSE
from kdforge.plugins.losses.rkd import RKD
from tests.plugins.losses import _reference as ref

# Fixed small tensors: 4 rows, 5 classes; one unlabeled row.
S = np.array(
    [
        [1.0, -0.5, 0.3, 2.0, -1.2],
        [0.2, 0.1, -0.7, 0.4, 1.5],
        [-1.0, 2.2, 0.0, 0.3, 0.8],
        [0.5, 0.5, -0.2, -1.4, 0.9],
    ]
)
T = np.array(
    [
        [2.0, -1.0, 0.1, 3.0, -2.0],
        [0.0, 0.4, -1.5, 1.2, 2.5],
        [-2.0, 3.0, 0.5, -0.3, 1.0],
        [1.5, -0.5, 0.2, -2.0, 0.4],
    ]
)
LABELS = np.array([3, 4, -1, 0])


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


def _labels() -> torch.Tensor:
    return torch.tensor(LABELS)


@pytest.mark.parametrize(("temp", "alpha"), [(1.0, 1.0), (4.0, 0.5), (20.0, 0.3)])
def test_hinton_kd_matches_reference(temp: float, alpha: float) -> None:
    loss = HintonKD(hparams={"temperature": temp, "alpha": alpha})
    got = float(loss(ModelOutput(_t(S)), ModelOutput(_t(T)), _labels()).total)
    assert got == pytest.approx(ref.hinton(S, T, LABELS, temp, alpha), rel=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 0.25])
def test_logit_mse_matches_reference(alpha: float) -> None:
    loss = LogitMSE(hparams={"alpha": alpha})
    got = float(loss(ModelOutput(_t(S)), ModelOutput(_t(T)), _labels()).total)
    assert got == pytest.approx(ref.logit_mse(S, T, LABELS, alpha), rel=1e-10)


def test_fitnets_with_learned_adapter_matches_reference() -> None:
    rng = np.random.default_rng(0)
    s_feat, t_feat = rng.normal(size=(4, 3)), rng.normal(size=(4, 6))
    loss = FitNets(FitNets.Params(ce_weight=0.0), {"hint_weight": 2.0})
    student = ModelOutput(_t(S), {"h": _t(s_feat)})
    teacher = ModelOutput(_t(T), {"g": _t(t_feat)})
    loss.bind(student, teacher)
    (adapter,) = loss.adapters.values()
    w = adapter.map.weight.detach().numpy()
    b = adapter.map.bias.detach().numpy()
    adapted = np.array(
        [[sum(w[o, k] * row[k] for k in range(3)) + b[o] for o in range(6)] for row in s_feat]
    )
    got = float(loss(student, teacher, _labels()).total.detach())
    assert got == pytest.approx(2.0 * ref.fitnets_hint([adapted], [t_feat]), rel=1e-10)


def test_fitnets_same_shape_needs_no_adapter_and_adds_ce() -> None:
    rng = np.random.default_rng(1)
    feats = [rng.normal(size=(4, 2, 3, 3)) for _ in range(4)]
    loss = FitNets(FitNets.Params(ce_weight=0.5), {"hint_weight": 1.0})
    student = ModelOutput(_t(S), {"a": _t(feats[0]), "b": _t(feats[1])})
    teacher = ModelOutput(_t(T), {"a": _t(feats[2]), "b": _t(feats[3])})
    got = float(loss(student, teacher, _labels()).total.detach())
    assert loss.parameters() == []
    expected = ref.fitnets_hint(
        [feats[0], feats[1]], [feats[2], feats[3]]
    ) + 0.5 * ref.cross_entropy(S, LABELS)
    assert got == pytest.approx(expected, rel=1e-10)


def test_attention_transfer_matches_reference() -> None:
    rng = np.random.default_rng(2)
    s_feats = [rng.normal(size=(3, 2, 4, 4)), rng.normal(size=(3, 5, 2, 2))]
    t_feats = [rng.normal(size=(3, 6, 4, 4)), rng.normal(size=(3, 3, 2, 2))]
    loss = AttentionTransfer(AttentionTransfer.Params(ce_weight=0.0), {"beta": 1000.0})
    student = ModelOutput(None, {"s0": _t(s_feats[0]), "s1": _t(s_feats[1])})
    teacher = ModelOutput(None, {"t0": _t(t_feats[0]), "t1": _t(t_feats[1])})
    got = float(loss(student, teacher, torch.full((3,), -1)).total)
    assert loss.pairs == [("t0", "s0"), ("t1", "s1")]
    assert got == pytest.approx(ref.attention_transfer(s_feats, t_feats, 1000.0), rel=1e-9)


def test_attention_transfer_pools_the_larger_map() -> None:
    rng = np.random.default_rng(3)
    s_feat, t_feat = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 4, 2, 2))
    loss = AttentionTransfer(AttentionTransfer.Params(ce_weight=0.0), {"beta": 2.0})
    got = float(
        loss(
            ModelOutput(None, {"s": _t(s_feat)}),
            ModelOutput(None, {"t": _t(t_feat)}),
            torch.full((2,), -1),
        ).total
    )
    # Pool the student's channel-mean-of-squares map 4x4 -> 2x2 by hand (2x2 blocks).
    sq = (s_feat**2).mean(1)
    pooled = sq.reshape(2, 2, 2, 2, 2).mean(axis=(2, 4))
    q_s = pooled.reshape(2, -1) / np.linalg.norm(pooled.reshape(2, -1), axis=1, keepdims=True)
    q_t = ref.attention(t_feat)
    assert got == pytest.approx(2.0 / 2 * float(((q_s - q_t) ** 2).mean()), rel=1e-9)


def test_rkd_matches_reference() -> None:
    rng = np.random.default_rng(4)
    s_emb, t_emb = rng.normal(size=(5, 3)), rng.normal(size=(5, 7)) * 3
    loss = RKD(RKD.Params(ce_weight=0.0), {"distance_weight": 25.0, "angle_weight": 50.0})
    result = loss(
        ModelOutput(None, {"e": _t(s_emb)}),
        ModelOutput(None, {"e": _t(t_emb)}),
        torch.full((5,), -1),
    )
    total, l_d, l_a = ref.rkd(s_emb, t_emb, 25.0, 50.0)
    assert result.parts["rkd_distance"] == pytest.approx(l_d, rel=1e-9)
    assert result.parts["rkd_angle"] == pytest.approx(l_a, rel=1e-9)
    assert float(result.total) == pytest.approx(total, rel=1e-9)


def test_rkd_is_invariant_to_scaling_and_rotating_the_student() -> None:
    # Relations, not positions: a scaled, rotated copy of the teacher costs nothing.
    rng = np.random.default_rng(5)
    t_emb = rng.normal(size=(6, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    s_emb = 3.0 * t_emb @ q
    loss = RKD(RKD.Params(ce_weight=0.0))
    result = loss(
        ModelOutput(None, {"e": _t(s_emb)}),
        ModelOutput(None, {"e": _t(t_emb)}),
        torch.full((6,), -1),
    )
    assert float(result.total) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("temp", "alpha", "beta"), [(1.0, 1.0, 8.0), (4.0, 0.5, 2.0)])
def test_dkd_matches_reference(temp: float, alpha: float, beta: float) -> None:
    loss = DKD(DKD.Params(ce_weight=1.0), {"temperature": temp, "alpha": alpha, "beta": beta})
    result = loss(ModelOutput(_t(S)), ModelOutput(_t(T)), _labels())
    # The unlabeled row takes the teacher's top class as its target.
    target = np.array([3, 4, int(np.argmax(T[2])), 0])
    tckd, nckd = ref.dkd(S, T, target, temp, alpha, beta)
    assert result.parts["tckd"] == pytest.approx(tckd, rel=1e-9)
    assert result.parts["nckd"] == pytest.approx(nckd, rel=1e-9)
    expected = ref.cross_entropy(S, LABELS) + temp**2 * (alpha * tckd + beta * nckd)
    assert float(result.total) == pytest.approx(expected, rel=1e-9)


def test_dkd_terms_add_up_to_classical_kd() -> None:
    # The paper's eq. (4): KD = TCKD + (1 - p_t^target) * NCKD (teacher's p).
    loss = DKD(DKD.Params(ce_weight=0.0), {"temperature": 2.0, "alpha": 1.0, "beta": 1.0})
    target = np.array([3, 4, 1, 0])
    tckd_sum = 0.0
    for i in range(4):
        p_t = ref.softmax(T[i] / 2.0)
        one_tckd, one_nckd = ref.dkd(S[i : i + 1], T[i : i + 1], target[i : i + 1], 2.0, 1, 1)
        tckd_sum += one_tckd + (1 - p_t[target[i]]) * one_nckd
    kd = sum(ref.kl(ref.softmax(T[i] / 2.0), ref.softmax(S[i] / 2.0)) for i in range(4))
    assert tckd_sum == pytest.approx(kd, rel=1e-9)
    assert loss.needs(loss.params).logits


@pytest.mark.parametrize("per_position", [False, True])
def test_cosine_embedding_matches_reference(per_position: bool) -> None:
    rng = np.random.default_rng(6)
    s_feat, t_feat = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    loss = CosineEmbedding(CosineEmbedding.Params(ce_weight=0.0, per_position=per_position))
    got = float(
        loss(
            ModelOutput(None, {"h": _t(s_feat)}),
            ModelOutput(None, {"h": _t(t_feat)}),
            torch.full((3,), -1),
        ).total
    )
    if per_position:
        expected = np.mean([ref.cosine(s_feat[:, p], t_feat[:, p]) for p in range(4)])
    else:
        expected = ref.cosine(s_feat, t_feat)
    assert got == pytest.approx(expected, rel=1e-10)


def test_cosine_embedding_needs_no_teacher_logits() -> None:
    needs = CosineEmbedding.needs(CosineEmbedding.Params())
    assert needs.features and not needs.logits


def test_composite_is_the_weighted_sum_of_its_terms() -> None:
    params = Composite.Params.model_validate(
        {
            "terms": [
                {"name": "hinton_kd", "weight": 0.7, "hparams": {"temperature": 3.0, "alpha": 0.9}},
                {"name": "logit_mse", "weight": {"low": 0.1, "high": 10, "log": True}},
            ]
        }
    )
    loss = Composite(params, {"logit_mse.weight": 2.5, "logit_mse.alpha": 0.5})
    result = loss(ModelOutput(_t(S)), ModelOutput(_t(T)), _labels())
    expected = 0.7 * ref.hinton(S, T, LABELS, 3.0, 0.9) + 2.5 * ref.logit_mse(S, T, LABELS, 0.5)
    assert float(result.total) == pytest.approx(expected, rel=1e-10)
    assert result.parts["hinton_kd"] == pytest.approx(ref.hinton(S, T, LABELS, 3.0, 0.9), rel=1e-10)
    assert "logit_mse.mse" in result.parts
