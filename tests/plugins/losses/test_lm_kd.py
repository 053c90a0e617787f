"""lm_kd and lm_hidden_cosine against explicit per-position references (loops, plain formulas).

The references below walk every position by hand in float64 and know nothing of the
plugin's code: softmax, KL, GKD's JSD(beta) and the cosine written out term by term.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import torch

from kdforge.data import NOT_A_WORD, UNLABELED, ModelOutput, TopKLogits
from kdforge.plugins.losses.composite import Composite
from kdforge.plugins.losses.lm_hidden_cosine import LMHiddenCosine, LMHiddenCosineParams
from kdforge.plugins.losses.lm_kd import LMKD, LMKDParams
from kdforge.plugins.tasks.language_modeling import LanguageModeling
from kdforge.testing import LossContract

# ---------------------------------------------------------------- references (plain math)


def _softmax(row: list[float], temperature: float) -> list[float]:
    top = max(row)
    exps = [math.exp((v - top) / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def _divergence(p: list[float], q: list[float], divergence: str, beta: float) -> float:
    if divergence == "forward_kl" or (divergence == "gjsd" and beta == 0.0):
        return _kl(p, q)
    if divergence == "reverse_kl" or (divergence == "gjsd" and beta == 1.0):
        return _kl(q, p)
    m = [beta * x + (1 - beta) * y for x, y in zip(p, q, strict=True)]
    return beta * _kl(p, m) + (1 - beta) * _kl(q, m)


def _reference_kd(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    divergence: str,
    temperature: float,
    beta: float = 0.5,
) -> float:
    """T^2 * mean over positions whose target is not -2 of D(p_T, q_T), by loops."""
    total, count = 0.0, 0
    n, length, _ = student.shape
    for i in range(n):
        for t in range(length):
            if int(labels[i, t]) == NOT_A_WORD:
                continue
            p = _softmax(teacher[i, t].double().tolist(), temperature)
            q = _softmax(student[i, t].double().tolist(), temperature)
            total += _divergence(p, q, divergence, beta)
            count += 1
    return temperature**2 * total / max(count, 1)


def _reference_ce(student: torch.Tensor, labels: torch.Tensor) -> float:
    """Cross-entropy averaged over the scored positions (target >= 0), by loops."""
    total, count = 0.0, 0
    for i in range(student.shape[0]):
        for t in range(student.shape[1]):
            target = int(labels[i, t])
            if target < 0:
                continue
            q = _softmax(student[i, t].double().tolist(), 1.0)
            total -= math.log(q[target])
            count += 1
    return total / max(count, 1)


def _reference_cosine(s: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> float:
    total, count = 0.0, 0
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            if int(labels[i, j]) == NOT_A_WORD:
                continue
            a, b = s[i, j].double().tolist(), t[i, j].double().tolist()
            dot = sum(x * y for x, y in zip(a, b, strict=True))
            norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
            total += 1.0 - dot / norm
            count += 1
    return total / max(count, 1)


# ---------------------------------------------------------------- fixtures


def _batch(
    vocab: int = 11, peaked: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    n, length = 3, 6
    student = torch.randn(n, length, vocab, generator=g)
    teacher = torch.randn(n, length, vocab, generator=g) * (6.0 if peaked else 2.0)
    labels = torch.randint(0, vocab, (n, length), generator=g)
    labels[:, -2:] = NOT_A_WORD  # padding
    labels[1, 0] = NOT_A_WORD  # an unmasked position of a masked LM
    labels[2] = labels[2].clamp_max(UNLABELED)  # distilled, not scored
    labels[0, 1] = UNLABELED
    return student, teacher, labels


def _loss(divergence: str, **hparams: float) -> LMKD:
    loss = LMKD(LMKDParams(divergence=divergence), hparams)  # type: ignore[arg-type]
    loss.task = LanguageModeling()
    return loss


CASES = [
    ("forward_kl", {"temperature": 1.0}),
    ("forward_kl", {"temperature": 2.5}),
    ("reverse_kl", {"temperature": 1.0}),
    ("reverse_kl", {"temperature": 0.7}),
    ("gjsd", {"temperature": 1.0, "beta": 0.5}),
    ("gjsd", {"temperature": 2.0, "beta": 0.1}),
    ("gjsd", {"temperature": 1.0, "beta": 0.0}),
    ("gjsd", {"temperature": 1.0, "beta": 1.0}),
]


# ---------------------------------------------------------------- lm_kd, dense teacher


@pytest.mark.parametrize(("divergence", "hparams"), CASES)
def test_lm_kd_matches_the_loop_reference(divergence: str, hparams: dict[str, float]) -> None:
    student, teacher, labels = _batch()
    alpha = 0.3
    loss = _loss(divergence, alpha=alpha, **hparams)
    s = student.clone().requires_grad_(True)
    result = loss(ModelOutput(s), ModelOutput(teacher), labels)
    temperature, beta = hparams["temperature"], hparams.get("beta", 0.5)
    kd = _reference_kd(student, teacher, labels, divergence, temperature, beta)
    ce = _reference_ce(student, labels)
    assert result.parts["kd"] == pytest.approx(kd, rel=1e-5, abs=1e-6)
    assert result.parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert float(result.total.detach()) == pytest.approx((1 - alpha) * ce + alpha * kd, rel=1e-5)
    result.total.backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all())
    assert float(s.grad.abs().sum()) > 0


def test_gjsd_edges_are_the_normalised_limits() -> None:
    """GKD's convention: JSD_beta/beta -> forward KL (beta -> 0), JSD/(1-beta) -> reverse KL."""
    student, teacher, labels = _batch()
    kd = {}
    for beta in (0.0, 1e-4, 1.0 - 1e-4, 1.0):
        out = _loss("gjsd", alpha=1.0, beta=beta)(
            ModelOutput(student), ModelOutput(teacher), labels
        )
        kd[beta] = out.parts["kd"]
    forward = _reference_kd(student, teacher, labels, "forward_kl", 1.0)
    reverse = _reference_kd(student, teacher, labels, "reverse_kl", 1.0)
    assert kd[0.0] == pytest.approx(forward, rel=1e-5)
    assert kd[1.0] == pytest.approx(reverse, rel=1e-5)
    # First order in beta (resp. 1 - beta): the limits, approached continuously.
    assert kd[1e-4] / 1e-4 == pytest.approx(forward, rel=2e-2)
    assert kd[1.0 - 1e-4] / 1e-4 == pytest.approx(reverse, rel=2e-2)


def test_not_a_word_positions_never_count_and_minus_one_positions_do() -> None:
    student, teacher, labels = _batch()
    loss = _loss("reverse_kl", alpha=1.0)
    clean = loss(ModelOutput(student), ModelOutput(teacher), labels).total
    noisy_s, noisy_t = student.clone(), teacher.clone()
    pad = labels == NOT_A_WORD
    noisy_s[pad], noisy_t[pad] = 40.0 * torch.randn_like(noisy_s[pad]), -30.0
    assert torch.allclose(clean, loss(ModelOutput(noisy_s), ModelOutput(noisy_t), labels).total)
    # A -1 position is distilled: changing the student there changes the KD term.
    moved = student.clone()
    moved[2, 0] += 5.0 * torch.randn_like(moved[2, 0])
    assert not torch.allclose(clean, loss(ModelOutput(moved), ModelOutput(teacher), labels).total)


def test_a_batch_of_padding_only_gives_zero_not_nan() -> None:
    student, teacher, labels = _batch()
    labels[:] = NOT_A_WORD
    s = student.clone().requires_grad_(True)
    total = _loss("gjsd", alpha=0.5, beta=0.5)(ModelOutput(s), ModelOutput(teacher), labels).total
    total.backward()
    assert (
        float(total.detach()) == 0.0 and s.grad is not None and bool(torch.isfinite(s.grad).all())
    )


def test_beta_is_searched_only_for_gjsd() -> None:
    names = {hp.name for hp in LMKD.declared_hyperparameters(LMKDParams(divergence="gjsd"))}
    assert names == {"temperature", "alpha", "beta"}
    assert "beta" not in {hp.name for hp in LMKD.declared_hyperparameters(LMKDParams())}


def test_a_student_over_another_vocabulary_is_refused() -> None:
    student, teacher, labels = _batch()
    with pytest.raises(Exception, match="vocabulary"):
        _loss("forward_kl")(ModelOutput(student[..., :-1]), ModelOutput(teacher), labels)


# ---------------------------------------------------------------- lm_kd on top-k teachers


def _reference_topk_kd_t1(
    student: torch.Tensor, top: TopKLogits, labels: torch.Tensor, divergence: str, beta: float
) -> float:
    """The k + 1 bucket divergence at T = 1, by loops: kept tokens plus one rest bucket."""
    total, count = 0.0, 0
    for i in range(student.shape[0]):
        for t in range(student.shape[1]):
            if int(labels[i, t]) == NOT_A_WORD:
                continue
            lse = float(top.lse[i, t])
            p = [math.exp(float(v) - lse) for v in top.values[i, t]]
            q_all = _softmax(student[i, t].double().tolist(), 1.0)
            q = [q_all[int(j)] for j in top.indices[i, t]]
            p.append(max(1.0 - sum(p), 0.0))
            q.append(1.0 - sum(q))
            total += _divergence(p, q, divergence, beta)
            count += 1
    return total / max(count, 1)


@pytest.mark.parametrize(("divergence", "hparams"), CASES)
def test_top_k_with_k_equal_to_the_vocabulary_is_exact(
    divergence: str, hparams: dict[str, float]
) -> None:
    student, teacher, labels = _batch()
    top = TopKLogits.from_logits(teacher, teacher.shape[-1])
    loss = _loss(divergence, alpha=0.4, **hparams)
    full = loss(ModelOutput(student), ModelOutput(teacher), labels)
    s = student.clone().requires_grad_(True)
    sparse = loss(ModelOutput(s), ModelOutput(top), labels)  # type: ignore[arg-type]
    assert float(sparse.total) == pytest.approx(float(full.total), rel=1e-5, abs=1e-6)
    sparse.total.backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all())


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "gjsd"])
def test_top_k_below_the_vocabulary_matches_its_bucket_reference(divergence: str) -> None:
    student, teacher, labels = _batch(vocab=40, peaked=True)
    top = TopKLogits.from_logits(teacher, 5)
    loss = _loss(divergence, alpha=1.0, temperature=1.0, beta=0.3)
    s = student.clone().requires_grad_(True)
    result = loss(ModelOutput(s), ModelOutput(top), labels)  # type: ignore[arg-type]
    expected = _reference_topk_kd_t1(student, top, labels, divergence, 0.3)
    assert result.parts["kd"] == pytest.approx(expected, rel=1e-4)
    result.total.backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all())


def test_top_k_below_the_vocabulary_is_close_to_the_full_loss() -> None:
    """A peaked teacher and a student near it (T = 1): the error shrinks as k grows, the
    top-k value never exceeds the full one (merging tokens lowers a divergence), and k = 32
    of 200 tokens is within 15%. (At T > 1 the tail weighs more; see docs/language-models.md.)"""
    g = torch.Generator().manual_seed(7)
    teacher = torch.randn(3, 6, 200, generator=g) * 3
    student = 0.8 * teacher + torch.randn(3, 6, 200, generator=g)
    labels = torch.randint(0, 200, (3, 6), generator=g)
    for divergence in ("forward_kl", "reverse_kl", "gjsd"):
        loss = _loss(divergence, alpha=1.0, temperature=1.0, beta=0.5)
        full = loss(ModelOutput(student), ModelOutput(teacher), labels).parts["kd"]
        errors = []
        for k in (8, 32, 200):
            top = TopKLogits.from_logits(teacher, k)
            sparse = loss(ModelOutput(student), ModelOutput(top), labels).parts["kd"]  # type: ignore[arg-type]
            assert sparse <= full + 1e-5, (divergence, k)
            errors.append(full - sparse)
        assert errors[0] > errors[1] > errors[2] - 1e-5 and abs(errors[2]) < 1e-5, divergence
        assert errors[1] < 0.15 * full, divergence


def test_top_k_rows_stored_in_half_precision_stay_finite() -> None:
    student, teacher, labels = _batch(vocab=30, peaked=True)
    top = TopKLogits.from_logits(teacher, 30)
    rounded = TopKLogits(top.values.half().float(), top.indices, top.lse, top.vocab_size)
    s = student.clone().requires_grad_(True)
    out = _loss("reverse_kl", alpha=1.0)(ModelOutput(s), ModelOutput(rounded), labels)  # type: ignore[arg-type]
    out.total.backward()
    assert math.isfinite(float(out.total)) and bool(torch.isfinite(s.grad).all())  # type: ignore[arg-type]


# ---------------------------------------------------------------- lm_hidden_cosine


def test_hidden_cosine_matches_the_loop_reference_and_projects_widths() -> None:
    _, _, labels = _batch()
    g = torch.Generator().manual_seed(1)
    s_h = torch.randn(3, 6, 8, generator=g)
    t_h = torch.randn(3, 6, 8, generator=g)
    loss = LMHiddenCosine(LMHiddenCosineParams(ce_weight=0.0), {"cos_weight": 1.0})
    out = loss(ModelOutput(None, {"h": s_h}), ModelOutput(None, {"h": t_h}), labels)
    assert out.parts["cos"] == pytest.approx(_reference_cosine(s_h, t_h, labels), rel=1e-5)
    # A narrower student: a learned linear projection d_s -> d_t, optimised with it.
    narrow = torch.randn(3, 6, 4, generator=g, requires_grad=True)
    projected = LMHiddenCosine(LMHiddenCosineParams(ce_weight=0.0))
    projected.bind(ModelOutput(None, {"h": narrow.detach()}), ModelOutput(None, {"h": t_h}))
    result = projected(ModelOutput(None, {"h": narrow}), ModelOutput(None, {"h": t_h}), labels)
    result.total.backward()
    (adapter,) = projected.adapters.values()
    mapped = adapter(narrow.detach())
    assert mapped.shape == t_h.shape
    assert result.parts["cos"] == pytest.approx(
        _reference_cosine(mapped.detach(), t_h, labels), rel=1e-5
    )
    assert all(p.grad is not None for p in projected.parameters())
    assert narrow.grad is not None and bool(torch.isfinite(narrow.grad).all())


def test_hidden_cosine_ignores_padding_positions() -> None:
    _, _, labels = _batch()
    g = torch.Generator().manual_seed(2)
    s_h, t_h = torch.randn(3, 6, 8, generator=g), torch.randn(3, 6, 8, generator=g)
    loss = LMHiddenCosine(LMHiddenCosineParams(ce_weight=0.0))
    clean = loss(ModelOutput(None, {"h": s_h}), ModelOutput(None, {"h": t_h}), labels).total
    noisy = s_h.clone()
    noisy[labels == NOT_A_WORD] = -t_h[labels == NOT_A_WORD]
    dirty = loss(ModelOutput(None, {"h": noisy}), ModelOutput(None, {"h": t_h}), labels).total
    assert torch.allclose(clean, dirty)


def test_distilbert_triple_loss_as_a_composite() -> None:
    """5 * soft targets (T=2) + 2 * MLM label loss + 1 * hidden cosine, as DistilBERT."""
    student, teacher, labels = _batch()
    g = torch.Generator().manual_seed(4)
    s_h, t_h = torch.randn(3, 6, 8, generator=g), torch.randn(3, 6, 8, generator=g)
    params = Composite.Params.model_validate(
        {
            "terms": [
                {"name": "lm_kd", "key": "kd", "weight": 5.0, "hparams": {"alpha": 1.0}},
                {"name": "lm_kd", "key": "mlm", "weight": 2.0, "hparams": {"alpha": 0.0}},
                {"name": "lm_hidden_cosine", "key": "cos", "params": {"ce_weight": 0.0}},
            ]
        }
    )
    assert Composite.reads_top_k(params)
    hparams: dict[str, Any] = {"kd.temperature": 2.0}
    loss = Composite(params, hparams)
    loss.task = LanguageModeling()
    s = student.clone().requires_grad_(True)
    out = loss(ModelOutput(s, {"h": s_h}), ModelOutput(teacher, {"h": t_h}), labels)
    expected = (
        5.0 * _reference_kd(student, teacher, labels, "forward_kl", 2.0)
        + 2.0 * _reference_ce(student, labels)
        + 1.0 * _reference_cosine(s_h, t_h, labels)
    )
    assert float(out.total) == pytest.approx(expected, rel=1e-5)
    out.total.backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all())


def test_which_losses_read_the_sparse_form() -> None:
    from kdforge.plugins.losses.hinton_kd import HintonKD

    assert LMKD.reads_top_k(LMKDParams())
    assert LMHiddenCosine.reads_top_k(LMHiddenCosineParams())  # reads no teacher logits
    assert not HintonKD.reads_top_k(None)
    mixed = Composite.Params.model_validate({"terms": [{"name": "lm_kd"}, {"name": "hinton_kd"}]})
    assert not Composite.reads_top_k(mixed)


# ---------------------------------------------------------------- contracts


class TestLMKDContract(LossContract):
    registered_name = "lm_kd"
    plugin_class = LMKD
    output_kind = "token_logits"


class TestLMKDReverseContract(LossContract):
    registered_name = "lm_kd"
    plugin_class = LMKD
    plugin_params: ClassVar[dict[str, Any]] = {"divergence": "reverse_kl"}
    output_kind = "token_logits"


class TestLMKDJSDContract(LossContract):
    registered_name = "lm_kd"
    plugin_class = LMKD
    plugin_params: ClassVar[dict[str, Any]] = {"divergence": "gjsd"}
    output_kind = "token_logits"


class TestLMHiddenCosineContract(LossContract):
    registered_name = "lm_hidden_cosine"
    plugin_class = LMHiddenCosine
    output_kind = "token_logits"
    teacher_features: ClassVar[dict[str, tuple[int, ...]]] = {"hidden": (4, 8)}
    student_features: ClassVar[dict[str, tuple[int, ...]]] = {"hidden": (4, 6)}
    zero_when_equal = False  # a student narrower than the teacher goes through a projection
