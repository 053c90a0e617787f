"""The registered student's description and the measured speed-up behind it."""

from __future__ import annotations

import re
import time

import torch

from kdforge.interfaces import ModelOutput


class _SlowTeacher:
    """A stand-in teacher whose predict takes at least 20 ms."""

    calls = 0

    def predict(self, x: torch.Tensor) -> ModelOutput:
        self.calls += 1
        time.sleep(0.02)
        return ModelOutput(logits=torch.zeros(len(x), 10))


class _CountedStudent(torch.nn.Linear):
    """A tiny student (tens of microseconds per batch) that counts its calls."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


def test_speedup_is_the_median_of_paired_ratios_with_its_spread() -> None:
    from kdforge.objectives.speedup import format_speedup, measure_speedup

    teacher = _SlowTeacher()
    threads_before = torch.get_num_threads()
    student = _CountedStudent(64, 10)
    result = measure_speedup(teacher, student, torch.zeros(32, 64), repeats=5, warmup=2)  # type: ignore[arg-type]
    # Warm-up, one call that sizes the samples, then one call per sample: a 20 ms
    # teacher fills a sample on its own.
    assert teacher.calls == 2 + 1 + 5
    # A sample of the fast student averages many calls, so timer noise does not rule it.
    assert student.calls > 2 + 1 + 5 * 10
    assert result["teacher_batch_ms"] >= 20.0
    assert result["speedup_low"] <= result["speedup"] <= result["speedup_high"]
    assert result["speedup"] > 1.0 and result["speedup_repeats"] == 5.0
    assert result["speedup_batch_size"] == 32.0
    assert torch.get_num_threads() == threads_before  # restored
    assert result["speedup_cpu_time"] == 0.0  # a teacher that waits is timed on the wall clock
    text = format_speedup(result)
    assert re.fullmatch(r"\d+\.\dx \(\d+\.\d-\d+\.\d, 5 repeats\)", text), text


class _BusyTeacher:
    """A stand-in teacher that computes on the CPU (a wide matrix product)."""

    weight = torch.randn(64, 2048)

    def predict(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=(x @ self.weight)[:, :10])


def test_speedup_of_cpu_bound_models_is_timed_in_cpu_time() -> None:
    from kdforge.objectives.speedup import measure_speedup

    x = torch.randn(256, 64)
    result = measure_speedup(_BusyTeacher(), torch.nn.Linear(64, 10), x, repeats=3)  # type: ignore[arg-type]
    # The time other processes hold the cores does not count against either model.
    assert result["speedup_cpu_time"] == 1.0
    assert result["speedup"] > 1.0 and result["teacher_batch_ms"] > result["student_batch_ms"]


def test_description_names_metrics_compression_speedup_and_gain() -> None:
    from kdforge.tracking.model_card import model_description

    summary = {
        "kdforge_version": "0.1.0",
        "teacher": "checkpoint",
        "dataset": "digits",
        "search": "demo",
        "best_trial": 7,
        "teacher_test_acc": 0.9667,
        "student_test_acc": 0.9528,
        "teacher_params": 50_000,
        "student_params": 1_234,
        "compression_ratio": 40.52,
        "speedup": 3.21,
        "speedup_low": 3.05,
        "speedup_high": 3.46,
        "speedup_repeats": 15.0,
        "teacher_batch_ms": 2.0,
        "student_batch_ms": 0.623,
        "speedup_batch_size": 256.0,
        "distillation_gain": 0.0125,
        "scratch_test_acc_runs": [0.94, 0.94],
        "distilled_test_acc_mean": 0.9528,
        "scratch_test_acc_mean": 0.9403,
        "best_arch": {"depth": 1, "width_0": 16},
        "best_lr": 0.0042,
        "parent_run_id": "run42",
    }
    text = model_description(summary)
    assert "teacher `checkpoint`" in text and "dataset `digits`" in text and "trial 007" in text
    assert "| test accuracy | 0.9667 | 0.9528 |" in text
    assert "| parameters | 50,000 | 1,234 |" in text
    assert "compression: 40.5x" in text and "speed-up: 3.2x" in text
    assert "middle half 3.0-3.5 of 15" in text
    assert "distillation gain: +1.25 points" in text and "2 seeds each" in text
    assert "both with the chosen trial's lr 0.0042" in text
    assert "run42" in text


def test_description_without_baseline_or_speedup_still_renders() -> None:
    from kdforge.tracking.model_card import model_description

    text = model_description({"teacher_test_acc": float("nan"), "student_params": 10})
    assert "| test accuracy | - | - |" in text and "speed-up" not in text
    assert "distillation gain" not in text
