"""The kdforge loss contract, plus DIST's own properties."""

from __future__ import annotations

import torch
from kdforge_example_loss import DistKD, pearson_rows

from kdforge.interfaces import ModelOutput
from kdforge.testing import LossContract


class TestDistKD(LossContract):
    plugin_class = DistKD
    registered_name = "dist_kd"


def test_pearson_ignores_shift_and_scale() -> None:
    a = torch.randn(4, 6)
    assert torch.allclose(pearson_rows(a, 3 * a + 1), torch.ones(4), atol=1e-6)
    assert torch.allclose(pearson_rows(a, -a), -torch.ones(4), atol=1e-6)


def test_relation_terms_ignore_a_scaled_teacher() -> None:
    """Unlike KL, DIST does not force the student to copy the teacher's sharpness."""
    logits = torch.randn(16, 5)
    loss = DistKD(DistKD.Params(ce_weight=0.0), {"temperature": 1.0})
    unlabeled = torch.full((16,), -1)
    sharper = loss(ModelOutput(logits), ModelOutput(logits * 1.05), unlabeled).total
    shuffled = loss(ModelOutput(logits), ModelOutput(logits[torch.randperm(16)]), unlabeled).total
    assert float(sharper) < 0.05 * float(shuffled)
