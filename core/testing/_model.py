"""Contracts of the student side: search spaces and exporters (see :mod:`kdforge.testing`)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest
import torch
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FixedTrial

from kdforge.data import DataInfo, VocabularyTrim
from kdforge.interfaces import Exporter, ExportResult, SearchSpace
from kdforge.testing._base import PluginContract, dumps, example_inputs

__all__ = ["ExporterContract", "SearchSpaceContract"]


class SearchSpaceContract(PluginContract):
    """Every sampled point builds a working model; samples respect their declarations.

    Attributes:
        data_infos: Data shapes to sample and build for.
        num_samples: Random points sampled per data shape.
        max_parameters: Upper bound on any built model's parameter count, if declared.
        batch_size: Rows of the forward/backward check batch.

    Override :meth:`check_sample` to assert constraints of your own parameters.
    """

    kind = "search_space"
    base = SearchSpace
    data_infos: ClassVar[tuple[DataInfo, ...]] = (
        DataInfo(name="contract-image", input_shape=(1, 8, 8), num_classes=10),
        DataInfo(name="contract-flat", input_shape=(20,), num_classes=3),
    )
    num_samples: ClassVar[int] = 8
    max_parameters: ClassVar[int | None] = None
    batch_size: ClassVar[int] = 3

    def check_sample(
        self, plugin: SearchSpace, arch: dict[str, Any], model: torch.nn.Module, info: DataInfo
    ) -> None:
        """Hook for plugin-specific constraints; called for every sampled point."""

    def _samples(self, plugin: SearchSpace, info: DataInfo) -> list[tuple[Any, dict[str, Any]]]:

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        out = []
        for _ in range(self.num_samples):
            trial = study.ask()
            extra = plugin.suggest(trial, info)
            out.append((trial, {**trial.params, **(extra or {})}))
            study.tell(trial, 0.0)
        return out

    def test_every_sample_builds_a_working_model(self, plugin: SearchSpace) -> None:
        for info in self.data_infos:
            for _, arch in self._samples(plugin, info):
                model = plugin.build(arch, info)
                assert isinstance(model, torch.nn.Module)
                n_params = sum(p.numel() for p in model.parameters())
                assert n_params > 0, f"{arch}: the model has no parameters"
                if self.max_parameters is not None:
                    assert n_params <= self.max_parameters, f"{arch}: {n_params} parameters"
                logits = model(example_inputs(info, self.batch_size))
                expected = info.output_shape(self.batch_size)  # per position: (n, T, K)
                trim = VocabularyTrim.of(model)
                if trim is not None:  # a trimmed LM student: logits over its kept tokens
                    expected = (*expected[:-1], len(trim.kept_token_ids))
                assert tuple(logits.shape) == expected, arch
                assert bool(torch.isfinite(logits).all()), arch
                logits.sum().backward()
                assert any(p.grad is not None for p in model.parameters()), arch
                for feature in plugin.feature_names(arch, info):
                    model.get_submodule(feature)  # feature losses tap these paths
                self.check_sample(plugin, arch, model, info)

    def test_samples_respect_their_distributions(self, plugin: SearchSpace) -> None:
        for info in self.data_infos:
            for trial, arch in self._samples(plugin, info):
                for name, dist in trial.distributions.items():
                    assert "/" not in name, f"{name!r}: '/' nests keys in Ray configs"
                    value = trial.params[name]
                    assert _within(dist, value), f"{name}={value} is outside {dist}"
                json.dumps({k: v for k, v in arch.items() if k not in trial.params})

    def test_suggest_replays_from_its_values(self, plugin: SearchSpace) -> None:
        for info in self.data_infos:
            for trial, _ in self._samples(plugin, info):
                replay = FixedTrial(dict(trial.params))
                plugin.suggest(replay, info)  # type: ignore[arg-type]  # duck-typed Trial
                assert replay.params == trial.params

    def test_build_is_deterministic(self, plugin: SearchSpace) -> None:
        # Checkpoints are rebuilt from ``arch``: the same arch must give the same shapes.
        for info in self.data_infos:
            for _, arch in self._samples(plugin, info)[:3]:
                first = plugin.build(dict(arch), info).state_dict()
                second = plugin.build(dict(arch), info).state_dict()
                assert {k: v.shape for k, v in first.items()} == {
                    k: v.shape for k, v in second.items()
                }

    def test_space_pickles(self, plugin: SearchSpace) -> None:
        restored = pickle.loads(dumps(plugin))
        assert type(restored) is type(plugin) and restored.params == plugin.params


class ExporterContract(PluginContract):
    """An exporter writes a file it checked against PyTorch, leaving the model intact.

    Attributes:
        input_shape: Per-example shape of the check model's inputs.
        tolerance: Largest acceptable ``max_abs_diff``.

    Override the ``model`` fixture to export a model of your own.
    """

    kind = "exporter"
    base = Exporter
    input_shape: ClassVar[tuple[int, ...]] = (1, 8, 8)
    tolerance: ClassVar[float] = 1e-4

    @pytest.fixture
    def model(self) -> torch.nn.Module:
        """A small seeded MLP over ``input_shape`` with 3 classes."""
        torch.manual_seed(0)
        features = math.prod(self.input_shape)
        return torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(features, 16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 3),
        ).eval()

    def test_declares_a_suffix(self, plugin: Exporter) -> None:
        suffix = type(plugin).suffix
        assert suffix.startswith(".") and len(suffix) > 1, f"suffix {suffix!r}"

    def test_export_writes_a_checked_file(
        self, plugin: Exporter, model: torch.nn.Module, tmp_path: Path
    ) -> None:
        example = torch.randn(5, *self.input_shape, generator=torch.Generator().manual_seed(0))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        target = tmp_path / f"student{type(plugin).suffix}"
        result = plugin.export(model, example, target)
        assert isinstance(result, ExportResult)
        assert Path(result.path).is_file() and Path(result.path).stat().st_size > 0
        assert isinstance(result.format, str) and result.format
        assert math.isfinite(result.max_abs_diff) and result.max_abs_diff <= self.tolerance
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, before[key], msg=f"export changed {key}")


def _within(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one that ``dist`` can suggest (from its public attributes)."""
    if isinstance(dist, CategoricalDistribution):
        return any(value == choice and type(value) is type(choice) for choice in dist.choices)
    if isinstance(dist, FloatDistribution | IntDistribution):
        if not dist.low <= value <= dist.high:
            return False
        if dist.step is None:
            return True
        units = (value - dist.low) / dist.step
        return math.isclose(units, round(units), abs_tol=1e-8)
    return False
