"""The README's demo, measured: train the digits teacher, search, then time both in ONNX Runtime.

Runs what ``scripts/demo`` runs after its install step, in a temporary folder with the
configs of ``examples/digits/``: ``kdforge train-teacher`` and ``kdforge search``
(each a process, timed from start to exit, its output printed as it comes). Then it
measures teacher and chosen student **the same way**: both exported to ONNX by the
``onnx`` exporter and timed in onnxruntime on the CPU with one intra-op thread, at
batch 1 and batch 256, median of ``--repeats`` runs after warm-up, the two models
alternating over ``--rounds`` rounds (the median of the rounds is kept). The search's
own ``speed-up`` line is PyTorch eager timing of a batch of 256 (one thread); it is
printed too, labelled as such.

``--latency-only`` skips the teacher training and the search: it builds the demo
teacher's architecture (``examples/digits/teacher.yaml``: MLP 1024-512-256) and the
README's student (MLP, one hidden layer of 77) with untrained weights (latency does
not depend on the weights) and times those two the same way. Usage::

    python benchmarks/demo.py [--repeats 200] [--rounds 3] [--latency-only]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdforge.objectives.costs import measure_onnx_latency  # noqa: E402
from kdforge.plugins.exporters.onnx import OnnxExporter  # noqa: E402
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher  # noqa: E402

BATCH = 256


def _run(command: list[str], cwd: Path) -> float:
    print("$ " + " ".join(command[1:] if command[0].endswith("kdforge") else command), flush=True)
    started = time.perf_counter()
    with subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print("  " + line.rstrip("\n"), flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"{command[1]} failed")
    return time.perf_counter() - started


def main() -> None:
    """Run the demo and measure teacher and student in ONNX Runtime."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-only", action="store_true")
    args = parser.parse_args()
    print(f"$ python benchmarks/demo.py {' '.join(sys.argv[1:])}".rstrip())
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}; "
        f"load average {load} at the start (a shared machine: absolute times are inflated)"
    )
    kdforge = str(Path(sys.executable).with_name("kdforge"))
    with tempfile.TemporaryDirectory(prefix="kdforge-demo-") as tmp:
        work = Path(tmp)
        if args.latency_only:
            _latency(work, args.repeats, args.rounds, *_architectures(work))
            return
        for name in ("teacher.yaml", "search.yaml"):
            shutil.copy(ROOT / "examples" / "digits" / name, work / name)
        teacher_s = _run([kdforge, "train-teacher", "teacher.yaml"], work)
        search_s = _run([kdforge, "search", "search.yaml"], work)
        student_onnx = next((work / "kdforge-runs" / "digits-mlp").glob("*/student.onnx"))
        teacher = CheckpointTeacher(
            CheckpointTeacher.Params(path=str(work / "kdforge-runs" / "digits-teacher.pt"))
        )
        teacher.load()
        teacher_onnx = work / "teacher.onnx"
        OnnxExporter().export(teacher._model, torch.zeros(8, 64), teacher_onnx)
        print(
            f"\ntrain-teacher {teacher_s:.1f} s, search {search_s:.1f} s (processes, start to exit)"
        )
        _latency(work, args.repeats, args.rounds, teacher_onnx, student_onnx)


def _architectures(work: Path) -> tuple[Path, Path]:
    """The demo teacher's and the README student's architectures as ONNX (untrained)."""
    from kdforge.data import DataInfo
    from kdforge.search_spaces.mlp import MLPSpace

    info = DataInfo(name="digits", input_shape=(64,), num_classes=10)
    shapes = {
        "teacher": {"depth": 3, "width_0": 1024, "width_1": 512, "width_2": 256, "dropout": 0.2},
        "student": {"depth": 1, "width_0": 77, "dropout": 0.0},
    }
    paths = []
    for name, arch in shapes.items():
        torch.manual_seed(0)
        model = MLPSpace(MLPSpace.Params(max_width=1024, max_depth=3)).build(arch, info).eval()
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: MLP {arch}, {params:,} parameters (untrained)")
        path = work / f"{name}.onnx"
        OnnxExporter().export(model, torch.zeros(8, 64), path)
        paths.append(path)
    return paths[0], paths[1]


def _latency(work: Path, repeats: int, rounds: int, teacher_onnx: Path, student_onnx: Path) -> None:
    example = torch.zeros(8, 64)
    results: dict[str, list[tuple[float, float]]] = {"teacher": [], "student": []}
    for _ in range(rounds):
        for name, path in (("teacher", teacher_onnx), ("student", student_onnx)):
            r = measure_onnx_latency(
                path, example, batch_size=BATCH, repeats=repeats, warmup=20, threads=1
            )
            results[name].append((r.latency_ms, r.latency_batch_ms))
    print(
        f"ONNX Runtime, CPU, 1 intra-op thread, median of {repeats} runs per round, "
        f"median of {rounds} alternating rounds:"
    )
    med = {
        name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
        for name, rows in results.items()
    }
    for name, (one, batch) in med.items():
        print(f"  {name:8s} batch 1: {one:.4f} ms   batch {BATCH}: {batch:.4f} ms")
    one, many = (med["teacher"][i] / med["student"][i] for i in (0, 1))
    print(f"  student speed-up (teacher / student): batch 1 x{one:.2f}, batch {BATCH} x{many:.2f}")


if __name__ == "__main__":
    main()
