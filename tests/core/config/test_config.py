"""Config validation: errors name the key, the value and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdforge.config import SearchConfig, load_search_config, validate_config
from kdforge.errors import ConfigError

VALID = {
    "name": "x",
    "dataset": {"name": "digits"},
    "teacher": {"name": "checkpoint", "params": {"path": "t.pt"}},
    "student": {"name": "mlp"},
}


def _with(**changes):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VALID.items()}
    for dotted, value in changes.items():
        node = raw
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return raw


def test_valid_config_gets_defaults() -> None:
    config = validate_config(VALID, SearchConfig)
    assert config.search.num_trials == 16
    assert config.loss.name == "hinton_kd"
    assert config.registered_model_name == "x-student"


def test_misspelled_key_suggests_the_right_one() -> None:
    with pytest.raises(
        ConfigError,
        match=r"search\.num_trails: unknown key \(did you mean 'search\.num_trials'\?\)",
    ):
        validate_config(_with(search__num_trails=3), SearchConfig)


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"search\.epochs: expected a number.*'many'"):
        validate_config(_with(search__epochs="many"), SearchConfig)
    with pytest.raises(ConfigError, match=r"search\.epochs: .*integer.*\[3\]"):
        validate_config(_with(search__epochs=[3]), SearchConfig)


def test_out_of_range_value() -> None:
    with pytest.raises(ConfigError, match=r"search\.num_trials: .*greater than or equal to 1"):
        validate_config(_with(search__num_trials=0), SearchConfig)


def test_missing_required_key() -> None:
    raw = dict(VALID)
    del raw["teacher"]
    with pytest.raises(ConfigError, match="teacher: required key is missing"):
        validate_config(raw, SearchConfig)


@pytest.mark.parametrize(
    ("lr", "message"),
    [
        ({"low": 0.1, "high": 0.01}, "must not exceed high"),
        ({"low": 0.0, "high": 0.1, "log": True}, "log scale needs low > 0"),
    ],
)
def test_invalid_search_bounds(lr, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(_with(search__lr=lr), SearchConfig)


def test_grace_period_cannot_exceed_epochs() -> None:
    with pytest.raises(ConfigError, match="grace_period"):
        validate_config(_with(search__epochs=2, search__grace_period=5), SearchConfig)


@pytest.mark.parametrize(
    ("epochs", "grace"), [(1, 1), (2, 1), (4, 1), (8, 2), (12, 3), (30, 3), (200, 3)]
)
def test_default_grace_period_follows_the_epochs(epochs: int, grace: int) -> None:
    # A quick smoke run (epochs: 2) must work with the defaults.
    config = validate_config(_with(search__epochs=epochs), SearchConfig)
    assert config.search.grace_period is None
    assert config.search.grace_epochs == grace <= epochs
    explicit = validate_config(_with(search__epochs=epochs, search__grace_period=1), SearchConfig)
    assert explicit.search.grace_epochs == 1


def test_load_from_file_with_overrides(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(VALID))
    config = load_search_config(path, {"search.num_trials": 2})
    assert config.search.num_trials == 2


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_search_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="directory"):
        load_search_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_search_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_search_config(scalar)


def test_odd_unknown_keys_are_named_as_written() -> None:
    for key in ("[", "float", "function-after[x]"):
        with pytest.raises(ConfigError, match=rf"{re.escape(key)}: unknown key"):
            validate_config({**VALID, key: None}, SearchConfig)
