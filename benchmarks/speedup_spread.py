"""How steady the reported speed-up is: the old single-call timing against the new one.

The same teacher (the demo's digits MLP shape, 725,258 params, loaded through the
``checkpoint`` teacher plugin) and the same 1,412-parameter student (``mlp 2x[18,8]``)
are timed on the same 256 rows, ``--runs`` times each, alternating between

* ``old``: what kdforge did before: one warm-up call each, then 7 single timed calls per
  model alternating, speed-up = median teacher time / median student time;
* ``new``: :func:`kdforge.objectives.speedup.measure_speedup`: 3 warm-up calls, samples
  that average back-to-back calls over >= 20 ms, 15 paired ratios, their median, and
  the middle half as the spread, timed in process CPU time (both models compute on the
  CPU here);
* ``new, wall``: the same on the wall clock (what a GPU teacher would get), to show
  what the CPU-time clock adds on a busy machine.

Both use one PyTorch thread. It prints every reading of each method and the ratio of
its highest to its lowest reading (1.00 = perfectly repeatable). Weights are untrained:
they do not change the time. Usage::

    python benchmarks/speedup_spread.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.checkpoint import save_checkpoint
from kdforge.objectives import speedup
from kdforge.objectives.speedup import format_speedup, measure_speedup
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.training.evaluate import count_parameters

TEACHER_ARCH = {"depth": 3, "width_0": 1024, "width_1": 512, "width_2": 256}
STUDENT_ARCH = {"depth": 2, "width_0": 18, "width_1": 8}


def old_speedup(teacher, student, inputs) -> float:
    """The measurement kdforge made before: 7 single calls each, ratio of medians."""

    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    def run_student() -> None:
        with torch.no_grad():
            student(inputs)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher.predict(inputs)
        run_student()
        t_times, s_times = [], []
        for _ in range(7):
            t_times.append(timed(lambda: teacher.predict(inputs)))
            s_times.append(timed(run_student))
    finally:
        torch.set_num_threads(before)
    return statistics.median(t_times) / statistics.median(s_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"$ python benchmarks/speedup_spread.py --runs {args.runs}")
    print(time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    splits = Digits().load(0)
    space = MLPSpace()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "teacher.pt"
        model = space.build(TEACHER_ARCH, splits.info)
        save_checkpoint(path, space="mlp", arch=TEACHER_ARCH, info=splits.info, model=model)
        teacher = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
        teacher.load()
        student = space.build(STUDENT_ARCH, splits.info).eval()
        inputs = splits.test.x[:256]
        print(
            f"teacher: mlp {TEACHER_ARCH} {count_parameters(model):,} params; student: "
            f"{space.describe(STUDENT_ARCH)} {count_parameters(student):,} params; "
            f"batch of {len(inputs)} digits test rows; {args.runs} runs per method, alternating"
        )
        old, new, wall, spreads = [], [], [], []
        for _ in range(args.runs):
            old.append(old_speedup(teacher, student, inputs))
            speed = measure_speedup(teacher, student, inputs)
            assert speed["speedup_cpu_time"] == 1.0
            new.append(speed["speedup"])
            spreads.append(format_speedup(speed))
            with patch.object(speedup, "_CPU_SHARE", 2.0):  # never CPU time: the wall clock
                wall.append(measure_speedup(teacher, student, inputs)["speedup"])
    print(f"{'method':<10}  {'readings':<44}  max/min")
    for name, values in (("old", old), ("new", new), ("new, wall", wall)):
        readings = ", ".join(f"{v:.1f}x" for v in values)
        print(f"{name:<10}  {readings:<44}  {max(values) / min(values):.2f}")
    print("new, as printed: " + " | ".join(spreads))


if __name__ == "__main__":
    main()
