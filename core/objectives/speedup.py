"""How much faster the student is than the teacher, measured side by side.

Both run in this process, in PyTorch eager mode, on the same batch of test inputs: the
teacher through its plugin's ``predict`` (what a user would call, on whatever device
the plugin uses), the student through its ``forward`` on the CPU, with the same
number of PyTorch CPU threads (one by default: thread synchronisation would swamp a
small model's time on a busy machine). A small student runs a batch in tens of
microseconds, where one timed call is mostly timer and scheduler noise, so:

* each model first runs ``warmup`` untimed calls (lazy initialisation, allocator
  growth, caches);
* one *sample* of a model is the mean time of as many back-to-back calls as fill
  :data:`SAMPLE_MS` milliseconds (counted once, after the warm-up);
* the two models' samples alternate (teacher, student, teacher, ...), so load from
  other processes hits both alike, and each pair gives one ratio;
* the speed-up is the median of the ``repeats`` paired ratios, and its spread the
  middle half of them (25th to 75th percentile): ``3.6x (3.4-3.9, 15 repeats)``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from kdforge.interfaces import Teacher

__all__ = ["SAMPLE_MS", "format_speedup", "measure_speedup"]

#: Milliseconds one timed sample lasts at least (short calls are repeated to fill it).
SAMPLE_MS = 20.0
# The most calls one sample averages (a model that runs in nanoseconds stops here).
_MAX_CALLS = 10_000


def _timed_ms(call: Callable[[], Any], calls: int = 1) -> float:
    """Mean milliseconds of ``calls`` back-to-back calls."""
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) * 1000.0 / calls


def _calls_per_sample(call: Callable[[], Any]) -> int:
    """How many calls fill :data:`SAMPLE_MS` (from one timed call after the warm-up)."""
    once = _timed_ms(call)
    return max(1, min(_MAX_CALLS, math.ceil(SAMPLE_MS / max(once, 1e-6))))


def _quartiles(values: list[float]) -> tuple[float, float]:
    """25th and 75th percentile (the middle half of ``values``)."""
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, high


def measure_speedup(
    teacher: Teacher,
    student: torch.nn.Module,
    inputs: torch.Tensor,
    repeats: int = 15,
    threads: int = 1,
    warmup: int = 3,
) -> dict[str, float]:
    """Time teacher and student on ``inputs`` and return the speed-up and its spread.

    Args:
        teacher: The loaded teacher plugin.
        student: The student model.
        inputs: One batch of inputs (e.g. the first 256 test rows).
        repeats: Paired samples (teacher, student); the median ratio is reported.
        threads: PyTorch CPU threads during the measurement (restored afterwards).
        warmup: Untimed calls per model before timing.

    Returns:
        ``speedup`` (median of the paired teacher/student ratios), ``speedup_low`` and
        ``speedup_high`` (their 25th and 75th percentile), ``speedup_repeats``,
        ``teacher_batch_ms`` and ``student_batch_ms`` (median per-call times) and
        ``speedup_batch_size``.
    """
    student.eval()

    def run_student() -> None:
        with torch.no_grad():
            student(inputs)

    def run_teacher() -> None:
        teacher.predict(inputs)

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(max(0, warmup)):
            run_teacher()
            run_student()
        teacher_calls = _calls_per_sample(run_teacher)
        student_calls = _calls_per_sample(run_student)
        teacher_times, student_times = [], []
        for _ in range(max(1, repeats)):
            teacher_times.append(_timed_ms(run_teacher, teacher_calls))
            student_times.append(_timed_ms(run_student, student_calls))
    finally:
        torch.set_num_threads(before)
    ratios = [t / max(s, 1e-9) for t, s in zip(teacher_times, student_times, strict=True)]
    low, high = _quartiles(ratios)
    return {
        "teacher_batch_ms": statistics.median(teacher_times),
        "student_batch_ms": statistics.median(student_times),
        "speedup": statistics.median(ratios),
        "speedup_low": low,
        "speedup_high": high,
        "speedup_repeats": float(len(ratios)),
        "speedup_batch_size": float(len(inputs)),
    }


def format_speedup(speed: dict[str, Any]) -> str:
    """``3.6x (3.4-3.9, 15 repeats)``; without the spread for older summaries."""
    text = f"{speed['speedup']:.1f}x"
    if "speedup_low" in speed and "speedup_high" in speed:
        repeats = int(speed.get("speedup_repeats", 0))
        text += f" ({speed['speedup_low']:.1f}-{speed['speedup_high']:.1f}, {repeats} repeats)"
    return text
