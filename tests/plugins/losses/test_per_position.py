"""hinton_kd and logit_mse on per-position (token tagging) logits: masked like a reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdforge.data import NOT_A_WORD, UNLABELED, ModelOutput
from kdforge.plugins.losses.hinton_kd import HintonKD, soft_target_kl
from kdforge.plugins.losses.logit_mse import LogitMSE
from kdforge.plugins.tasks.token_classification import TokenClassification


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    n, length, k = 5, 7, 4
    student = torch.randn(n, length, k, generator=g)
    teacher = torch.randn(n, length, k, generator=g) * 2
    labels = torch.randint(0, k, (n, length), generator=g)
    labels[:, 5:] = NOT_A_WORD  # padding
    labels[:, 0] = NOT_A_WORD  # [CLS]
    labels[1, 2] = NOT_A_WORD  # a later sub-token
    labels[3] = labels[3].clamp_max(UNLABELED)  # a transfer row: words without tags
    return student, teacher, labels


def test_hinton_kd_per_position_matches_a_flat_reference() -> None:
    student, teacher, labels = _batch()
    loss = HintonKD(hparams={"temperature": 3.0, "alpha": 0.3})
    loss.task = TokenClassification()
    result = loss(ModelOutput(student), ModelOutput(teacher), labels)
    words = labels != NOT_A_WORD
    tagged = labels >= 0
    kd = soft_target_kl(student[words], teacher[words], 3.0) * 9.0
    ce = F.cross_entropy(student[tagged], labels[tagged])
    assert torch.allclose(result.total, 0.7 * ce + 0.3 * kd, atol=1e-6)
    assert abs(result.parts["kd"] - float(kd)) < 1e-5


def test_padding_positions_do_not_count() -> None:
    student, teacher, labels = _batch()
    pad = labels == NOT_A_WORD
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    noisy_student[pad] = 50.0
    noisy_teacher[pad] = -50.0
    for loss in (HintonKD(), LogitMSE(hparams={"alpha": 0.5})):
        loss.task = TokenClassification()
        clean = loss(ModelOutput(student), ModelOutput(teacher), labels).total
        noisy = loss(ModelOutput(noisy_student), ModelOutput(noisy_teacher), labels).total
        assert torch.allclose(clean, noisy), type(loss).name


def test_logit_mse_per_position_matches_a_flat_reference() -> None:
    student, teacher, labels = _batch()
    loss = LogitMSE(hparams={"alpha": 1.0})
    loss.task = TokenClassification()
    words = labels != NOT_A_WORD
    result = loss(ModelOutput(student), ModelOutput(teacher), labels)
    assert torch.allclose(result.total, F.mse_loss(student[words], teacher[words]), atol=1e-6)


def test_label_loss_without_a_task_reads_per_position_tags() -> None:
    student, _, labels = _batch()
    tagged = labels >= 0
    expected = F.cross_entropy(student[tagged], labels[tagged])
    assert torch.allclose(HintonKD().label_loss(student, labels), expected, atol=1e-6)
