"""Command-line options shared by several commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kdforge.config.loading import parse_yaml
from kdforge.errors import ConfigError

__all__ = ["parse_set"]


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as dotted config overrides (values read as YAML).

    Raises:
        ConfigError: an item without ``=``, or a value that is not YAML (naming
            ``--set KEY``).
    """
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. search.num_trials=4)")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_yaml(value, f"--set {key.strip()}")
    return overrides
