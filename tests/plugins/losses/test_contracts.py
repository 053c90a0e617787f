"""Every registered loss passes the loss contract kit (``kdforge.testing.LossContract``).

The kit feeds feature-based losses named features of different shapes on the two
sides (adapters, automatic layer mapping), and identical ones for the zero check.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kdforge.plugin_host.manager import get_registry
from kdforge.plugins.losses.attention_transfer import AttentionTransfer
from kdforge.plugins.losses.composite import Composite
from kdforge.plugins.losses.cosine_embedding import CosineEmbedding
from kdforge.plugins.losses.dkd import DKD
from kdforge.plugins.losses.fitnets import FitNets
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.losses.logit_mse import LogitMSE
from kdforge.plugins.losses.multilabel_kd import MultilabelKD
from kdforge.plugins.losses.regression_kd import RegressionKD
from kdforge.plugins.losses.rkd import RKD
from kdforge.testing import LossContract
from tests.plugins.losses import test_lm_kd as lm_losses


class TestHintonKD(LossContract):
    plugin_class = HintonKD
    registered_name = "hinton_kd"


class TestHintonKDPerPosition(LossContract):
    """Token tagging logits (n, T, K), padding positions (-2) masked."""

    plugin_class = HintonKD
    registered_name = "hinton_kd"
    output_kind = "token_logits"


class TestLogitMSEPerPosition(LossContract):
    plugin_class = LogitMSE
    registered_name = "logit_mse"
    output_kind = "token_logits"


class TestLogitMSE(LossContract):
    plugin_class = LogitMSE
    registered_name = "logit_mse"


class TestLogitMSEOnValues(LossContract):
    """The same loss on real-valued outputs (its label term is the regression task's)."""

    plugin_class = LogitMSE
    registered_name = "logit_mse"
    output_kind = "values"


class TestLogitMSEOnLabelLogits(LossContract):
    plugin_class = LogitMSE
    registered_name = "logit_mse"
    output_kind = "label_logits"


class TestRegressionKD(LossContract):
    plugin_class = RegressionKD
    registered_name = "regression_kd"


class TestRegressionKDTeacherBound(LossContract):
    plugin_class = RegressionKD
    registered_name = "regression_kd"
    plugin_params: ClassVar[dict[str, Any]] = {"teacher_bound": True}


class TestMultilabelKD(LossContract):
    plugin_class = MultilabelKD
    registered_name = "multilabel_kd"


class TestFitNetsOnValues(LossContract):
    plugin_class = FitNets
    registered_name = "fitnets"
    output_kind = "values"


class TestCompositeOnValues(LossContract):
    plugin_class = Composite
    registered_name = "composite"
    plugin_params: ClassVar[dict[str, Any]] = {
        "terms": [
            {"name": "regression_kd", "weight": 1.0},
            {"name": "fitnets", "weight": 0.5},
        ]
    }


class TestDKD(LossContract):
    plugin_class = DKD
    registered_name = "dkd"


class TestFitNets(LossContract):
    plugin_class = FitNets
    registered_name = "fitnets"


class TestAttentionTransfer(LossContract):
    plugin_class = AttentionTransfer
    registered_name = "attention_transfer"


class TestRKD(LossContract):
    plugin_class = RKD
    registered_name = "rkd"


class TestCosineEmbedding(LossContract):
    plugin_class = CosineEmbedding
    registered_name = "cosine_embedding"


class TestComposite(LossContract):
    plugin_class = Composite
    registered_name = "composite"
    plugin_params: ClassVar[dict[str, Any]] = {
        "terms": [
            {"name": "hinton_kd", "weight": 1.0, "hparams": {"alpha": 1.0}},
            {"name": "fitnets", "weight": {"low": 0.1, "high": 10.0, "log": True}},
            {"name": "rkd", "weight": 0.5},
        ]
    }


def test_every_registered_loss_is_under_contract() -> None:
    covered = {
        cls.registered_name
        for cls in (
            TestHintonKD,
            TestLogitMSE,
            TestDKD,
            TestFitNets,
            TestAttentionTransfer,
            TestRKD,
            TestCosineEmbedding,
            TestComposite,
            TestRegressionKD,
            TestMultilabelKD,
            # The LM losses' contracts live beside their references (a module, not the
            # classes, is imported: pytest would collect imported Test classes twice).
            lm_losses.TestLMKDContract,
            lm_losses.TestLMHiddenCosineContract,
        )
    }
    builtin = {
        r.name for r in get_registry().list("loss") if r.cls.__module__.startswith("kdforge.")
    }
    assert builtin <= covered, f"built-in losses without a contract test: {builtin - covered}"
