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
  middle half of them (25th to 75th percentile): ``3.6x (3.4-3.9, 15 repeats)``;
* when both models compute on this process's CPU (CUDA not in use, and a call's CPU
  time is not negligible against its wall time) the clock is the process's CPU time:
  the time other processes hold the cores is not counted, which on a busy machine is
  most of the wall-clock noise. Otherwise (a teacher on a GPU, or one that waits on
  a service) it is the wall clock.
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
# Below this CPU time per wall time a call is taken to wait, not compute (see _clock).
_CPU_SHARE = 0.05


def _timed_ms(
    call: Callable[[], Any], calls: int = 1, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Mean milliseconds of ``calls`` back-to-back calls on ``clock``."""
    started = clock()
    for _ in range(calls):
        call()
    return (clock() - started) * 1000.0 / calls


def _probe(call: Callable[[], Any]) -> tuple[int, float]:
    """Calls that fill :data:`SAMPLE_MS` of wall time, and the call's CPU share.

    One timed call after the warm-up gives both: its wall time sizes the samples (so a
    call that waits cannot make a sample run for minutes), and its CPU time over its
    wall time says whether the work runs on this process's CPU at all.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    calls = max(1, min(_MAX_CALLS, math.ceil(SAMPLE_MS / max(wall * 1000.0, 1e-6))))
    return calls, cpu / max(wall, 1e-9)


def _clock(*cpu_shares: float) -> Callable[[], float]:
    """Process CPU time when both models compute on this process's CPU; else wall time.

    A model on a GPU (CUDA in use) or one that mostly waits (a remote service) uses
    almost no CPU time, so its CPU time would say nothing; those are timed on the wall
    clock. The bar is low (5%) because on a busy machine a CPU-bound call may get only
    a small share of a core, and that case is the one CPU time is for.
    """
    gpu = torch.cuda.is_available() and torch.cuda.is_initialized()
    if gpu or min(cpu_shares) < _CPU_SHARE:
        return time.perf_counter
    return time.process_time


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
    teacher_inputs: torch.Tensor | None = None,
) -> dict[str, float]:
    """Time teacher and student on ``inputs`` and return the speed-up and its spread.

    Args:
        teacher: The loaded teacher plugin.
        student: The student model.
        inputs: One batch of inputs (e.g. the first 256 test rows).
        repeats: Paired samples (teacher, student); the median ratio is reported.
        threads: PyTorch CPU threads during the measurement (restored afterwards).
        warmup: Untimed calls per model before timing.
        teacher_inputs: The same rows as the teacher reads them, when it reads its
            own view (``Split.teacher_x``); None: ``inputs``.

    Returns:
        ``speedup`` (median of the paired teacher/student ratios), ``speedup_low`` and
        ``speedup_high`` (their 25th and 75th percentile), ``speedup_repeats``,
        ``teacher_batch_ms`` and ``student_batch_ms`` (median per-call times),
        ``speedup_batch_size`` and ``speedup_cpu_time`` (1.0 when timed in process CPU
        time, 0.0 for wall-clock time).
    """
    student.eval()

    def run_student() -> None:
        with torch.no_grad():
            student(inputs)

    teacher_batch = inputs if teacher_inputs is None else teacher_inputs

    def run_teacher() -> None:
        teacher.predict(teacher_batch)

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(max(0, warmup)):
            run_teacher()
            run_student()
        teacher_calls, teacher_share = _probe(run_teacher)
        student_calls, student_share = _probe(run_student)
        clock = _clock(teacher_share, student_share)
        teacher_times, student_times = [], []
        for _ in range(max(1, repeats)):
            teacher_times.append(_timed_ms(run_teacher, teacher_calls, clock))
            student_times.append(_timed_ms(run_student, student_calls, clock))
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
        "speedup_cpu_time": float(clock is time.process_time),
    }


def format_speedup(speed: dict[str, Any]) -> str:
    """``3.6x (3.4-3.9, 15 repeats)``; without the spread for older summaries."""
    text = f"{speed['speedup']:.1f}x"
    if "speedup_low" in speed and "speedup_high" in speed:
        repeats = int(speed.get("speedup_repeats", 0))
        text += f" ({speed['speedup_low']:.1f}-{speed['speedup_high']:.1f}, {repeats} repeats)"
    return text
