"""Search space ``choice``: one search over several student spaces.

``student: {name: choice, params: {spaces: [{name: pruned}, {name: cnn, params: {...}}]}}``
(or the short form ``student: [{name: pruned}, {name: cnn}]``, which the config turns
into this) lets the sampler decide which family pays off: every trial first samples
``space`` (one of the spaces' names), then that space's own parameters, prefixed with
its name (``cnn.depth``), so two spaces never share a parameter. ``build`` strips the
prefix and hands the rest to the chosen space.

``arch`` also carries ``space_params`` (the chosen space's params as JSON, when it has
any), so a checkpoint of the chosen student is rebuilt without the search's config.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, model_validator
from torch import nn

import kdforge
from kdforge import PluginRef, instantiate
from kdforge.data import DataInfo, DataSplits
from kdforge.errors import ConfigError
from kdforge.interfaces import PluginParams, PrefixedTrial, SearchSpace, Teacher

__all__ = ["ChoiceParams", "ChoiceSpace"]


class ChoiceParams(PluginParams):
    """The spaces of the ``choice`` search space."""

    spaces: list[PluginRef] = Field(
        default_factory=list,
        description="Student spaces to choose from, each {name, params}; each name at most once.",
    )

    @model_validator(mode="after")
    def _check(self) -> ChoiceParams:
        names = [s.name for s in self.spaces]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"each space may be given once; repeated: {', '.join(twice)}")
        if "choice" in names:
            raise ValueError("a choice cannot contain another choice")
        return self


class ChoiceSpace(SearchSpace):
    """Several student spaces in one search: the sampler picks the space, then its values."""

    name = "choice"
    Params = ChoiceParams

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        assert isinstance(p, ChoiceParams)
        self._spaces: dict[str, SearchSpace] = {
            ref.name: instantiate("search_space", ref, f"student.params.spaces[{i}]")
            for i, ref in enumerate(p.spaces)
        }

    def bind_teacher(self, teacher: Teacher | None) -> None:
        """Bind the teacher to every space."""
        if not self._spaces:
            raise ConfigError(
                "student.params.spaces: a choice needs at least one space",
                hint="e.g. student: [{name: pruned}, {name: cnn}]",
            )
        for space in self._spaces.values():
            space.bind_teacher(teacher)

    def bind_data(self, splits: DataSplits) -> None:
        """Show the data to every space."""
        for space in self._spaces.values():
            space.bind_data(splits)

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample ``space``, then that space's values as ``<space>.<name>``."""
        if not self._spaces:
            return None  # unconfigured (e.g. `kdforge plugins show`): nothing to sample
        chosen = str(trial.suggest_categorical("space", list(self._spaces)))
        space = self._spaces[chosen]
        prefixed: Any = PrefixedTrial(trial, f"{chosen}.")  # duck-typed optuna.Trial
        extra = space.suggest(prefixed, info) or {}
        out = {f"{chosen}.{k}": v for k, v in extra.items()}
        params = space.params.model_dump(mode="json", exclude_defaults=True)
        if params:
            out["space_params"] = json.dumps(params, sort_keys=True)
        return out

    def _split(self, arch: dict[str, Any]) -> tuple[SearchSpace, dict[str, Any]]:
        chosen = arch.get("space")
        if not isinstance(chosen, str):
            raise ConfigError(
                "student: a choice architecture needs `space` (the chosen space's name)",
                hint="give the values the search sampled (see best_config.yaml)",
            )
        space = self._spaces.get(chosen)
        if space is None:
            params = json.loads(arch["space_params"]) if arch.get("space_params") else {}
            space = instantiate(
                "search_space", PluginRef(name=chosen, params=params), "student.space"
            )
        prefix = f"{chosen}."
        inner = {k[len(prefix) :]: v for k, v in arch.items() if k.startswith(prefix)}
        if "init_from_teacher" in arch:  # set by the from-scratch baseline for every space
            inner["init_from_teacher"] = arch["init_from_teacher"]
        return space, inner

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Build with the chosen space (one not configured here is created from the arch)."""
        space, inner = self._split(arch)
        return space.build(inner, info)

    def feature_names(self, arch: dict[str, Any], info: DataInfo) -> list[str]:
        """The chosen space's feature names."""
        space, inner = self._split(arch)
        return space.feature_names(inner, info)


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``choice`` search space."""
    register("choice", ChoiceSpace)
