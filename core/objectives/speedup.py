"""How much faster the student is than the teacher, measured side by side.

Both run in this process, in PyTorch eager mode, on the same batch of test inputs: the
teacher through its plugin's ``predict`` (what a user would call, on whatever device
the plugin uses), the student through its ``forward`` on the CPU, with the same
number of PyTorch CPU threads (one by default: thread synchronisation would swamp a
small model's time on a busy machine), after one untimed warm-up call each. Their
calls alternate (teacher, student, teacher, ...), so load from other processes hits
both alike; the figure is the ratio of the median wall times of ``repeats`` calls each.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from kdforge.interfaces import Teacher

__all__ = ["measure_speedup"]


def _timed_ms(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def measure_speedup(
    teacher: Teacher,
    student: torch.nn.Module,
    inputs: torch.Tensor,
    repeats: int = 7,
    threads: int = 1,
) -> dict[str, float]:
    """Time teacher and student on ``inputs`` and return the speed-up.

    Args:
        teacher: The loaded teacher plugin.
        student: The student model.
        inputs: One batch of inputs (e.g. the first 256 test rows).
        repeats: Timed calls per model (the median is kept).
        threads: PyTorch CPU threads during the measurement (restored afterwards).

    Returns:
        ``teacher_batch_ms``, ``student_batch_ms``, ``speedup`` (teacher / student)
        and ``speedup_batch_size``.
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
        run_teacher()  # warm-up: lazy initialisation and allocator growth are not timed
        run_student()
        teacher_times, student_times = [], []
        for _ in range(repeats):
            teacher_times.append(_timed_ms(run_teacher))
            student_times.append(_timed_ms(run_student))
    finally:
        torch.set_num_threads(before)
    teacher_ms = statistics.median(teacher_times)
    student_ms = statistics.median(student_times)
    return {
        "teacher_batch_ms": teacher_ms,
        "student_batch_ms": student_ms,
        "speedup": teacher_ms / max(student_ms, 1e-9),
        "speedup_batch_size": float(len(inputs)),
    }
