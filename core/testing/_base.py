"""Shared part of the contract kit (:mod:`kdforge.testing`): the base contract and
helpers that build check inputs like the host does."""

from __future__ import annotations

import inspect
import math
import pickle
from typing import Any, ClassVar

import cloudpickle
import pytest
import torch
from pydantic import ValidationError

from kdforge.data import DataInfo
from kdforge.interfaces import HParam, ModelOutput, PluginParams
from kdforge.plugin_host.manager import get_registry

__all__ = ["PluginContract"]


def dumps(obj: Any) -> bytes:
    """Serialise like Ray does (cloudpickle, which ships with Ray)."""
    return cloudpickle.dumps(obj)


class PluginContract:
    """Checks every plugin kind shares: docs, ``Params``, pickling, registration."""

    kind: ClassVar[str] = ""
    base: ClassVar[type] = object
    #: The plugin class under test (or override the ``plugin`` fixture).
    plugin_class: ClassVar[Any] = None
    #: Config ``params`` for the default ``plugin`` fixture.
    plugin_params: ClassVar[dict[str, Any]] = {}
    #: When set, the registry must map ``(kind, registered_name)`` to the class.
    registered_name: ClassVar[str | None] = None

    @pytest.fixture
    def plugin(self) -> Any:
        """The plugin instance under test, built from ``plugin_class``/``plugin_params``."""
        if self.plugin_class is None:
            pytest.fail(f"{type(self).__name__}: set plugin_class or override the plugin fixture")
        return self.plugin_class(self.plugin_class.Params.model_validate(self.plugin_params))

    def test_is_a_documented_plugin_of_its_kind(self, plugin: Any) -> None:
        cls = type(plugin)
        assert isinstance(plugin, self.base), f"{cls.__name__} is not a {self.base.__name__}"
        assert (inspect.getdoc(cls) or "").strip(), f"{cls.__name__} needs a docstring"
        assert isinstance(cls.name, str) and cls.name, f"{cls.__name__}.name is empty"

    def test_params_model_is_strict_and_documented(self, plugin: Any) -> None:
        model = type(plugin).Params
        assert issubclass(model, PluginParams), "Params must subclass kdforge.PluginParams"
        assert isinstance(plugin.params, model)
        with pytest.raises(ValidationError):
            model.model_validate({**plugin.params.model_dump(), "__no_such_key__": 1})
        undocumented = [n for n, f in model.model_fields.items() if not f.description]
        assert not undocumented, f"Params fields without description=: {undocumented}"

    def test_params_pickle(self, plugin: Any) -> None:
        restored = pickle.loads(dumps(plugin.params))
        assert restored == plugin.params

    def test_registered_under_its_name(self, plugin: Any) -> None:
        if self.registered_name is None:
            pytest.skip("registered_name not set")

        registry = get_registry()
        kind, name = self.kind, self.registered_name
        refused = [f for f in registry.failures if f.stage == "clash" and (kind, name) in f.names]
        rivals = [r for r in registry.conflicts.get((kind, name), []) if r.cls is not type(plugin)]
        if rivals and not refused:
            # Another distribution registered the same name: it is the cause, name it.
            pytest.fail(
                f"{kind} {name!r} is also registered by "
                f"{' and '.join(r.origin for r in rivals)}, so the name is unusable; "
                "that distribution clashes with this plugin (uninstall it or rename one)"
            )
        record = registry.get(kind, name)
        if record.cls is not type(plugin) and refused:
            pytest.fail(
                f"{kind} {name!r} is a kdforge built-in name: "
                f"{', '.join(repr(f.source) for f in refused)} registered it again and "
                "was refused; register this plugin under another name"
            )
        assert record.cls is type(plugin), f"registry maps it to {record.origin}"


def example_inputs(info: DataInfo, n: int) -> torch.Tensor:
    """Seeded inputs for ``info``: normal floats, or token ids below the vocabulary size."""
    generator = torch.Generator().manual_seed(0)
    dtype = getattr(torch, info.input_dtype)
    if dtype.is_floating_point:
        return torch.randn(n, *info.input_shape, generator=generator).to(dtype)
    high = info.vocab_size or 2
    return torch.randint(0, high, (n, *info.input_shape), generator=generator, dtype=dtype)


def detached(output: ModelOutput) -> ModelOutput:
    logits = None if output.logits is None else output.logits.detach()
    return ModelOutput(logits, {k: v.detach() for k, v in output.features.items()})


def first_rows(x: Any, limit: int = 256) -> torch.Tensor:
    """All rows of a tensor; the first ``limit`` rows of lazy inputs."""
    return x if isinstance(x, torch.Tensor) else x[: min(limit, len(x))]


def settings(hyperparameters: tuple[HParam, ...]) -> list[dict[str, float]]:
    """Hyperparameter values to check: defaults (or midpoints), all-low, all-high."""

    def middle(hp: HParam) -> float:
        if hp.default is not None:
            return float(hp.default)
        return math.sqrt(hp.low * hp.high) if hp.log else (hp.low + hp.high) / 2

    defaults = {hp.name: middle(hp) for hp in hyperparameters}
    if not hyperparameters:
        return [defaults]
    low = {hp.name: float(hp.low) for hp in hyperparameters}
    high = {hp.name: float(hp.high) for hp in hyperparameters}
    return [defaults, low, high]
