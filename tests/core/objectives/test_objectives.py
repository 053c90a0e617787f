"""Objectives and constraints: counts against hand-computed cases, real ONNX latency."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
import torch
from torch import nn

from kdforge.config import SearchConfig, SelectionSettings, validate_config
from kdforge.config.objective_settings import LatencySettings
from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.objectives.constraints import (
    TrialObjectives,
    constraint_excess,
    measure_trial,
    rejected_result,
    trial_objectives_for,
    violations,
)
from kdforge.objectives.costs import (
    _median_ms,
    count_macs,
    example_input,
    measure_latency,
    model_size_bytes,
)
from kdforge.plugins.exporters.onnx import OnnxExporter
from kdforge.report.leaderboard import TrialRow, select_best
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.transformer_net import EncoderLayer
from kdforge.training.evaluate import count_parameters

ONNX = OnnxExporter()
FLAT = DataInfo(name="flat", input_shape=(64,), num_classes=32)
FAST = LatencySettings(repeats=5, warmup=1, batch_size=8)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_linear_counts_by_hand() -> None:
    layer = nn.Linear(64, 32)
    assert count_macs(layer, torch.zeros(1, 64)) == 64 * 32 == 2048
    assert count_macs(layer, torch.zeros(3, 64)) == 3 * 2048  # the count covers the batch
    assert count_parameters(layer) == 64 * 32 + 32
    assert model_size_bytes(layer) == (64 * 32 + 32) * 4


def test_convolutions_count_by_hand() -> None:
    # Each output element costs in_channels * kernel MACs: 4 x 8 x 8 outputs x (1 x 3 x 3).
    assert count_macs(nn.Conv2d(1, 4, 3, padding=1), torch.zeros(1, 1, 8, 8)) == 4 * 64 * 9
    assert count_macs(nn.Conv1d(2, 4, 3, padding=1), torch.zeros(1, 2, 16)) == 4 * 16 * 2 * 3
    # BatchNorm buffers count in the size, not in the parameters.
    block = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4))
    assert count_parameters(block) == 36 + 8
    assert model_size_bytes(block) == (36 + 8 + 4 + 4) * 4 + 8  # + running stats, int64 count


def test_attention_is_counted_despite_fast_paths() -> None:
    length, hidden, ffn = 10, 16, 32
    attention = 2 * length * length * hidden  # scores and weighted sum
    x = torch.zeros(1, length, hidden)
    mha = nn.MultiheadAttention(hidden, 2, batch_first=True).eval()

    class Wrapper(nn.Module):
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return mha(h, h, h, need_weights=False)[0]

    with torch.no_grad():  # the caller's no_grad must not hide the fused kernel's matmuls
        assert count_macs(Wrapper(), x) == 4 * length * hidden * hidden + attention
    layer = EncoderLayer(hidden, 2, ffn, dropout=0.1)
    expected = length * hidden * 3 * hidden + length * hidden * hidden + 2 * length * hidden * ffn
    assert count_macs(layer, x) == expected + attention
    assert layer.training  # counting restores the module's mode


def test_model_stats_match_a_built_mlp() -> None:
    arch = {"depth": 2, "width_0": 16, "width_1": 8}
    model = MLPSpace().build(arch, FLAT)
    metrics, violation = measure_trial(model, FLAT, None)
    macs = 64 * 16 + 16 * 8 + 8 * 32
    assert violation is None
    assert metrics == {"params": macs + 16 + 8 + 32, "macs": macs, "size_bytes": 4 * (macs + 56)}


def test_example_inputs_follow_the_dtype() -> None:
    tokens = DataInfo(name="t", input_shape=(5,), num_classes=2, input_dtype="int64", vocab_size=7)
    x = example_input(tokens, 4)
    assert x.dtype == torch.int64 and x.shape == (4, 5) and int(x.max()) < 7
    assert example_input(FLAT, 2).dtype == torch.float32


def test_median_excludes_warmup() -> None:
    class Session:
        calls = 0

        def run(self, outputs: Any, feed: Any) -> None:
            self.calls += 1
            time.sleep(0.05 if self.calls <= 2 else 0.002)  # two slow first runs

    median = _median_ms(Session(), {}, repeats=5, warmup=2)
    assert 2.0 <= median < 40.0


@pytest.mark.slow
def test_onnx_latency_is_measured_and_ranks_models() -> None:
    small = nn.Sequential(nn.Linear(64, 32))
    big = nn.Sequential(nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.Linear(1024, 32))
    fast = measure_latency(small, FLAT, ONNX, batch_size=8, repeats=7, warmup=2)
    slow = measure_latency(big, FLAT, ONNX, batch_size=8, repeats=7, warmup=2)
    assert 0 < fast.latency_ms < 1000 and 0 < fast.latency_batch_ms < 1000
    assert fast.onnx_bytes > 64 * 32 * 4 and fast.batch_size == 8
    # ~1.1M vs 2K MACs at batch 8: the big model is slower even on a busy machine.
    assert slow.latency_batch_ms > 2 * fast.latency_batch_ms
    assert small.training  # measuring does not switch the caller's model to eval


def test_token_models_are_timed_with_integer_inputs() -> None:
    from kdforge.search_spaces.transformer import TransformerSpace

    info = DataInfo(name="t", input_shape=(6,), num_classes=3, input_dtype="int64", vocab_size=9)
    model = TransformerSpace().build({"layers": 1, "hidden": 8, "heads": 2, "ffn": 8}, info)
    result = measure_latency(model, info, ONNX, batch_size=4, repeats=3, warmup=1)
    assert math.isfinite(result.latency_ms) and result.latency_ms > 0


def _mlp_points(n: int) -> list[nn.Module]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = MLPSpace(MLPSpace.Params(max_depth=3, min_width=4, max_width=64))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    models = []
    for _ in range(n):
        trial = study.ask()
        space.suggest(trial, FLAT)
        models.append(space.build(trial.params, FLAT))
        study.tell(trial, 0.0)
    return models


def test_constraints_reject_exactly_the_violating_points() -> None:
    models = _mlp_points(30)
    stats = [measure_trial(m, FLAT, None)[0] for m in models]
    params_limit = sorted(s["params"] for s in stats)[15]
    macs_limit = sorted(s["macs"] for s in stats)[10]
    spec = TrialObjectives(limits={"params": params_limit, "macs": macs_limit})
    for model, stat in zip(models, stats, strict=True):
        _, violation = measure_trial(model, FLAT, spec)
        too_big = stat["params"] > params_limit or stat["macs"] > macs_limit
        assert (violation is not None) == too_big, (stat, violation)
        if violation is not None:
            assert ("max_params" in violation) == (stat["params"] > params_limit)
            assert ("max_macs" in violation) == (stat["macs"] > macs_limit)
    # A value equal to its limit is allowed.
    assert violations({"params": 10}, {"params": 10.0}) == []
    assert violations({"params": 11}, {"params": 10.0}) == ["params 11 > max_params 10"]


def test_latency_limit_is_checked_after_the_cheap_ones() -> None:
    model = nn.Sequential(nn.Linear(64, 32))
    cheap_fail = TrialObjectives(
        limits={"params": 10, "latency_ms": 1e6}, latency=FAST, exporter=ONNX
    )
    metrics, violation = measure_trial(model, FLAT, cheap_fail)
    assert violation == "params 2,080 > max_params 10"
    assert "latency_ms" not in metrics  # rejected without an export
    too_slow = TrialObjectives(
        limits={"latency_ms": 1e-9}, measure_latency=True, latency=FAST, exporter=ONNX
    )
    metrics, violation = measure_trial(model, FLAT, too_slow)
    assert violation is not None and violation.startswith("latency_ms ")
    assert metrics["latency_ms"] > 0 and metrics["latency_batch_ms"] > 0


def test_rejected_result_and_constraint_values() -> None:
    result = rejected_result({"params": 50.0}, "params 50 > max_params 10")
    assert result["val_acc"] == 0.0 and result["kdforge_status"] == "rejected"
    assert result["latency_ms"] == math.inf  # every objective has a value for the searcher
    excess = constraint_excess(
        {"params": 50.0, "latency_ms": math.inf}, {"params": 10.0, "latency_ms": 2.0}
    )
    assert excess == {"params": 4.0, "latency_ms": 0.0}


def _config(**raw: Any) -> SearchConfig:
    base = {
        "name": "x",
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint"},
        "student": {"name": "mlp"},
    }
    return validate_config({**base, **raw}, SearchConfig)


def test_config_sections_and_trial_settings() -> None:
    config = _config(
        objectives=[{"name": "val_acc"}, {"name": "latency_ms", "mode": "min"}],
        constraints={"max_params": 1000},
        latency={"repeats": 3},
    )
    spec = trial_objectives_for(config, ONNX)
    assert spec.limits == {"params": 1000.0} and spec.measure_latency and spec.latency.repeats == 3
    assert not trial_objectives_for(_config(constraints={"max_macs": 5}), ONNX).measure_latency
    assert trial_objectives_for(_config(constraints={"max_latency_ms": 5}), ONNX).measure_latency
    for bad, where in (
        ({"objectives": [{"name": "params"}]}, "must include the task.s metric"),
        ({"objectives": [{"name": "val_acc"}, {"name": "val_acc"}]}, "twice"),
        ({"objectives": [{"name": "val_acc"}, {"name": "params", "mode": "max"}]}, "objectives.1"),
        ({"constraints": {"max_latency": 3}}, "did you mean 'constraints.max_latency_ms'"),
        ({"selection": {"rule": "most_accurate_under"}}, "needs at least one of"),
    ):
        with pytest.raises(ConfigError, match=where):
            _config(**bad)


def _row(number: int, acc: float, params: int, latency: float | None) -> TrialRow:
    return TrialRow(
        number=number,
        trial_id=f"t{number}",
        status="finished",
        params=params,
        val_acc=acc,
        test_acc=acc,
        epochs=3,
        lr=0.01,
        checkpoint="/ckpt",
        latency_ms=latency,
    )


def test_most_accurate_under_chooser() -> None:
    rows = [_row(0, 0.95, 9000, 9.0), _row(1, 0.93, 3000, 4.0), _row(2, 0.90, 500, None)]
    under = SelectionSettings(rule="most_accurate_under", max_latency_ms=5.0)
    assert select_best(rows, under) is rows[1]
    both = SelectionSettings(rule="most_accurate_under", max_latency_ms=5.0, max_params=1000)
    assert select_best(rows, both) is None  # trial 2 was never timed: it does not qualify
    assert (
        select_best(rows, SelectionSettings(rule="most_accurate_under", max_params=1000)) is rows[2]
    )
    smallest = SelectionSettings(rule="smallest_within", tolerance=0.03)
    assert select_best(rows, smallest) is rows[1]


def test_cli_flags_set_the_chooser() -> None:
    from kdforge.cli import build_parser
    from kdforge.cli.search import selection_overrides

    args = build_parser().parse_args(["search", "c.yaml", "--max-latency-ms", "5"])
    assert selection_overrides(args) == {
        "selection.rule": "most_accurate_under",
        "selection.max_latency_ms": 5.0,
    }
    args = build_parser().parse_args(
        ["search", "c.yaml", "--select", "smallest_within", "--tolerance", "0.02"]
    )
    assert selection_overrides(args) == {
        "selection.rule": "smallest_within",
        "selection.tolerance": 0.02,
    }
