"""The distillation gain: the chosen architecture trained again, distilled and from scratch.

The chosen trial's architecture is trained with ``baseline.seeds`` seeds twice: once
distilled with the chosen hyperparameters and once from scratch (labels only, no
teacher knowledge at all, teacher-layer initialisation included). The scratch runs
reuse the distilled trial's learning rate, epochs and batch size, so the two sides
differ in the teacher alone (docs/config.md, ``baseline``; the report and the result
block say so beside the gain). Both run as Ray tasks on the search's cluster; the gain
is the difference of their mean test accuracies.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import ray
import torch

from kdforge import progress
from kdforge.report.leaderboard import TrialRow
from kdforge.search.trial import TrialPayload, train_on_payload
from kdforge.training.evaluate import evaluate

__all__ = ["measure_distillation_gain", "train_fixed"]


def train_fixed(
    payload: TrialPayload,
    arch: dict[str, Any],
    loss_hparams: dict[str, float],
    lr: float,
    seed: int,
    distill: bool,
) -> float:
    """Train one fixed architecture and return its test value of the task's metric."""
    torch.set_num_threads(max(1, payload.threads))
    torch.manual_seed(seed)
    if not distill:
        # From scratch means no teacher knowledge at all, teacher-layer init included.
        arch = {**arch, "init_from_teacher": False}
    model = payload.space.build(arch, payload.info)
    loss = payload.loss_cls(payload.loss_params, loss_hparams) if distill else None
    train_on_payload(payload, model, lr=lr, seed=seed, loss=loss)
    acc, _ = evaluate(model, payload.test_x, payload.test_y, payload.task)
    return acc


def _train_both_ways(
    payload: TrialPayload,
    best: TrialRow,
    seeds: int,
    cpus: float,
    emit: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Test accuracies of ``seeds`` distilled and ``seeds`` scratch runs, as Ray tasks."""
    remote = ray.remote(num_cpus=cpus, num_gpus=payload.gpus)(train_fixed)
    ref = ray.put(payload)
    assert best.lr is not None  # a finished trial always has its sampled lr
    futures = {
        kind: [
            remote.remote(ref, best.arch, best.loss_hparams, best.lr, 1000 + s, kind == "distilled")
            for s in range(seeds)
        ]
        for kind in ("distilled", "scratch")
    }
    pending = [f for refs in futures.values() for f in refs]
    with progress.phase("baseline", total=len(pending), unit="runs", emit=emit) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.advance(len(done))
    return {kind: [float(v) for v in ray.get(refs)] for kind, refs in futures.items()}


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread


def measure_distillation_gain(
    payload: TrialPayload,
    best: TrialRow,
    seeds: int,
    cpus: float,
    emit: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``best``'s architecture distilled and from scratch; return the gain.

    Args:
        payload: The search's trial payload (data, teacher outputs, loss, settings).
        best: The chosen trial (architecture, loss hyperparameters, learning rate).
        seeds: Runs per side (``baseline.seeds``).
        cpus: CPUs per run (``search.cpus_per_trial``).
        emit: Where progress lines go (:mod:`kdforge.progress`).

    Returns:
        Entries for ``summary.json``: the runs, their means and spreads, and the gain.
    """
    runs = _train_both_ways(payload, best, seeds, cpus, emit)
    distilled_mean, distilled_sd = _stats(runs["distilled"])
    scratch_mean, scratch_sd = _stats(runs["scratch"])
    return {
        "distilled_test_acc_runs": runs["distilled"],
        "scratch_test_acc_runs": runs["scratch"],
        "distilled_test_acc_mean": distilled_mean,
        "distilled_test_acc_std": distilled_sd,
        "scratch_test_acc_mean": scratch_mean,
        "scratch_test_acc_std": scratch_sd,
        # Positive when distillation helps, whatever the metric's direction.
        "distillation_gain": payload.metric.gain(distilled_mean, scratch_mean),
    }
