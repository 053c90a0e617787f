"""Composition in the config: term weights and hyperparameters join the search space."""

from __future__ import annotations

import optuna
import pytest

from kdforge.config import LossConfig, Range
from kdforge.data import DataInfo
from kdforge.errors import ConfigError, PluginError
from kdforge.plugin_host.resolve import loss_hparams, loss_needs, validate_params
from kdforge.plugins.losses.composite import Composite
from kdforge.search.sampler import DefineByRun
from kdforge.search.trial import split_config
from kdforge.search_spaces.mlp import MLPSpace

TERMS = [
    {"name": "hinton_kd", "weight": 1.0, "hparams": {"temperature": 4.0}},
    {
        "name": "fitnets",
        "weight": {"low": 0.1, "high": 10, "log": True},
        "params": {"layers": {"blocks.1": "blocks.0"}},
    },
]


def _config(terms: list | None = None, **hparams) -> LossConfig:
    return LossConfig(name="composite", params={"terms": terms or TERMS}, hparams=hparams)


def test_settings_fix_or_search_each_weight_and_term_hparam() -> None:
    settings = {hp.name: s for hp, s in loss_hparams(_config())}
    assert settings["hinton_kd.weight"] == 1.0
    assert settings["hinton_kd.temperature"] == 4.0
    assert settings["hinton_kd.alpha"] == Range(low=0.0, high=1.0, log=False)
    assert settings["fitnets.weight"] == Range(low=0.1, high=10.0, log=True)
    assert settings["fitnets.hint_weight"] == Range(low=0.01, high=100.0, log=True)


def test_loss_hparams_override_composite_names() -> None:
    settings = {hp.name: s for hp, s in loss_hparams(_config(**{"fitnets.weight": 2.0}))}
    assert settings["fitnets.weight"] == 2.0
    with pytest.raises(
        ConfigError, match=r"loss.hparams.fitnets.wieght.*did you mean 'fitnets.weight'"
    ):
        loss_hparams(_config(**{"fitnets.wieght": 2.0}))


def test_the_plain_loss_form_still_works() -> None:
    settings = {
        hp.name: s for hp, s in loss_hparams(LossConfig(name="hinton_kd", hparams={"alpha": 0.5}))
    }
    assert settings == {"temperature": Range(low=1.0, high=20.0, log=True), "alpha": 0.5}


def test_define_by_run_samples_composite_hparams_and_the_trial_builds_the_loss() -> None:
    info = DataInfo(name="toy", input_shape=(1, 8, 8), num_classes=10)
    sampler = DefineByRun(
        MLPSpace(), info, Range(low=1e-3, high=1e-2, log=True), loss_hparams(_config())
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    constants = sampler(trial)
    assert 0.1 <= trial.params["loss/fitnets.weight"] <= 10
    assert "loss/hinton_kd.alpha" in trial.params and "loss/hinton_kd.weight" not in trial.params
    assert constants is not None
    assert {k: v for k, v in constants.items() if k.startswith("loss/")} == {
        "loss/hinton_kd.weight": 1.0,
        "loss/hinton_kd.temperature": 4.0,
    }
    # What Ray hands the trial: flat names unflattened on "/" only (dots stay).
    config: dict = {"student": {}, "loss": {}}
    for key, value in {**trial.params, **constants}.items():
        head, _, rest = key.partition("/")
        if rest:
            config[head][rest] = value
        else:
            config[head] = value
    _, hparams, _ = split_config(config)
    record_params = Composite.Params.model_validate({"terms": TERMS})
    loss = Composite(record_params, hparams)
    (_, w_kd, kd), (_, w_fit, fit) = loss.terms
    assert w_kd == 1.0 and kd.hparams["temperature"] == 4.0
    assert w_fit == pytest.approx(trial.params["loss/fitnets.weight"])
    assert fit.hparams["hint_weight"] == pytest.approx(trial.params["loss/fitnets.hint_weight"])


def test_needs_are_the_union_of_the_terms() -> None:
    needs = loss_needs(_config())
    assert needs.logits and needs.features
    assert needs.teacher_layers == ("blocks.1",) and needs.student_layers == ("blocks.0",)
    auto = loss_needs(_config([{"name": "hinton_kd"}, {"name": "rkd"}]))
    assert auto.features and auto.teacher_layers is None
    assert not loss_needs(LossConfig(name="hinton_kd")).features


def test_bad_terms_are_reported_with_their_config_key() -> None:
    from kdforge.plugin_host.manager import get_registry

    record = get_registry().get("loss", "composite")
    with pytest.raises(PluginError, match="fitnet"):
        loss_hparams(_config([{"name": "fitnet"}]))
    with pytest.raises(ConfigError, match=r"loss.params.terms\[0\].hparams.temp.*temperature"):
        loss_hparams(_config([{"name": "hinton_kd", "hparams": {"temp": 2.0}}]))
    with pytest.raises(ConfigError, match=r"loss.params.terms\[1\].params"):
        loss_hparams(_config([{"name": "hinton_kd"}, {"name": "fitnets", "params": {"bogus": 1}}]))
    with pytest.raises(ConfigError, match="cannot contain another composite"):
        loss_hparams(_config([{"name": "composite", "params": {"terms": [{"name": "dkd"}]}}]))
    with pytest.raises(ConfigError, match="distinct `key`"):
        validate_params(record, {"terms": [{"name": "dkd"}, {"name": "dkd"}]}, "loss")
    keyed = {"terms": [{"name": "fitnets", "key": "fit_a"}, {"name": "fitnets", "key": "fit_b"}]}
    names = [hp.name for hp, _ in loss_hparams(LossConfig(name="composite", params=keyed))]
    assert names == ["fit_a.weight", "fit_a.hint_weight", "fit_b.weight", "fit_b.hint_weight"]
