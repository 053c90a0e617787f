"""Teacher inference throughput: in the search process vs as a Ray job, side by side.

A generated dataset (Gaussian rows, ``--rows`` of them, split 80/10/10) and an MLP
teacher of about ``--params`` parameters (saved as a kdforge checkpoint, loaded by the
``checkpoint`` teacher plugin as a search loads it) go through both paths of
:mod:`kdforge.teacher.inference`, in one run:

* **local**: ``compute_teacher_outputs`` in this process (the teacher on the CPU, torch's
  default threads), as a search on one machine runs it;
* **Ray job**: ``teacher_inference.where: ray`` on a local Ray with ``--workers``
  teacher actors (one CPU each; with ``--device cuda``, the GPUs split between them),
  each rebuilding the teacher from its ``teacher:`` reference.

It prints rows/s for each (the Ray job twice: with and without the actors' start-up),
whether the outputs are equal bit for bit (CPU) or their largest difference (GPU), and,
with ``--device cuda``, the GPUs' utilisation sampled by ``nvidia-smi`` while the job
runs. Usage::

    python benchmarks/teacher_inference.py                      # CPU: 6M params, 20k rows
    python benchmarks/teacher_inference.py --device cuda --params 100M --rows 100000
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.checkpoint import save_checkpoint
from kdforge.config import PluginRef
from kdforge.config.teacher_inference_settings import TeacherInferenceSettings
from kdforge.data import DataInfo, DataSplits, Split
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.teacher.inference import TeacherInference
from kdforge.teacher.outputs import TeacherOutputs, compute_teacher_outputs
from kdforge.teacher.ray_job import RayJobReport

#: Rows per teacher call when --batch-size is not given: kdforge's default on the CPU;
#: on a GPU the script picks a larger one (a big teacher keeps the GPU busy with it).
_BATCH = {"cpu": 512, "cuda": 8192}


def _count(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def _splits(rows: int, features: int, classes: int) -> DataSplits:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, features, generator=generator)
    y = torch.randint(0, classes, (rows,), generator=generator)
    a, b = int(rows * 0.8), int(rows * 0.9)
    info = DataInfo(name="generated", input_shape=(features,), num_classes=classes)
    return DataSplits(
        info=info, train=Split(x[:a], y[:a]), val=Split(x[a:b], y[a:b]), test=Split(x[b:], y[b:])
    )


def _teacher_file(folder: Path, params: int, depth: int, info: DataInfo) -> tuple[Path, int]:
    """An MLP of ``depth`` equal hidden layers with about ``params`` parameters."""
    inputs, classes = math.prod(info.input_shape), info.num_classes
    # (depth-1) w^2 + (inputs + classes + depth) w ~= params: the width w.
    a, b = depth - 1, inputs + classes + depth
    width = max(8, int((-b + math.sqrt(b * b + 4 * a * params)) / (2 * a)))
    arch = {"depth": depth, **{f"width_{i}": width for i in range(depth)}, "dropout": 0.0}
    torch.manual_seed(0)
    model = MLPSpace().build(arch, info)
    path = save_checkpoint(folder / "teacher.pt", space="mlp", arch=arch, info=info, model=model)
    return path, sum(p.numel() for p in model.parameters())


class _GpuSampler:
    """GPU utilisation and memory from ``nvidia-smi`` every 200 ms, in a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _GpuSampler:
        smi = shutil.which("nvidia-smi")
        if smi:
            query = "--query-gpu=utilization.gpu,memory.used"
            self._process = subprocess.Popen(
                [smi, query, "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                text=True,
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                util, memory = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((util, memory))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()

    def summary(self) -> str:
        if not self.samples:
            return "GPU utilisation: not measured (no nvidia-smi)"
        utils = [u for u, _ in self.samples]
        busy = [u for u in utils if u > 0]
        return (
            f"GPU utilisation while the job ran (nvidia-smi, {len(utils)} samples, all GPUs): "
            f"mean {sum(utils) / len(utils):.0f}%, mean while busy "
            f"{sum(busy) / max(1, len(busy)):.0f}%, max {max(utils):.0f}%; "
            f"memory used max {max(m for _, m in self.samples):,.0f} MiB"
        )


def _compare(ours: TeacherOutputs, local: TeacherOutputs) -> str:
    if all(torch.equal(getattr(ours, s), getattr(local, s)) for s in ("train", "val", "test")):
        return "outputs equal to the local path's bit for bit (torch.equal): yes"
    diff = max(float((getattr(ours, s) - getattr(local, s)).abs().max()) for s in ("val", "test"))
    return f"outputs equal bit for bit: no; largest difference {diff:.3g}"


def main() -> None:
    """Run both paths on the same teacher and data and print their throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="20000", help="rows in all (e.g. 100000 or 100k)")
    parser.add_argument("--params", default="6M", help="teacher parameters (e.g. 100M)")
    parser.add_argument("--depth", type=int, default=4, help="hidden layers of the teacher")
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="teacher actors of the Ray job")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--skip-local", action="store_true", help="only the Ray job")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, local and Ray alternating")
    args = parser.parse_args()
    print(f"$ python benchmarks/teacher_inference.py {' '.join(sys.argv[1:])}".rstrip())
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"{platform.node()}, {os.cpu_count()} CPUs, {gpu}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads in this process); load average {load} at the start"
    )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU here")
    batch = args.batch_size or _BATCH[args.device]
    splits = _splits(_count(args.rows), args.features, args.classes)
    rows = sum(len(s.y) for s in splits.named_splits().values())
    with tempfile.TemporaryDirectory(prefix="kdforge-teacher-inference-") as tmp:
        path, params = _teacher_file(Path(tmp), _count(args.params), args.depth, splits.info)
        print(
            f"teacher: MLP {args.depth} hidden layers, {params:,} params; data: {rows:,} rows "
            f"x {args.features} features (generated); batch size {batch}"
        )
        teacher = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
        teacher.load()
        if not args.skip_local:
            with torch.no_grad():  # warm-up: torch's thread pool and first allocations
                teacher.predict(splits.train.x[:batch])

        import ray

        gpus = torch.cuda.device_count() if args.device == "cuda" else 0
        ray.init(
            num_cpus=args.workers,
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
        settings = TeacherInferenceSettings(
            where="ray",
            batch_size=batch,
            actors=args.workers,
            cpus_per_actor=1,
            gpus_per_actor=gpus / args.workers if gpus else 0,
        )
        inference = TeacherInference(
            settings, teacher_ref=PluginRef(name="checkpoint", params={"path": str(path)})
        )
        local_s: list[float] = []
        ray_s: list[tuple[float, RayJobReport]] = []
        local = outputs = None
        try:
            # Alternating, so load from other jobs on the machine falls on both paths.
            for repeat in range(args.repeats):
                if not args.skip_local:
                    started = time.perf_counter()
                    local = compute_teacher_outputs(teacher, splits, batch, emit=lambda _: None)
                    local_s.append(time.perf_counter() - started)
                    print(
                        f"round {repeat}: local (this process, CPU, {torch.get_num_threads()} "
                        f"threads): {rows:,} rows in {local_s[-1]:.2f} s = "
                        f"{rows / local_s[-1]:,.0f} rows/s"
                    )
                with _GpuSampler() as sampler:
                    started = time.perf_counter()
                    outputs = inference(teacher, splits, emit=lambda _: None)
                    total = time.perf_counter() - started
                job = inference.last_job
                assert job is not None
                ray_s.append((total, job))
                print(
                    f"round {repeat}: Ray job ({job.actors} actors, "
                    f"{','.join(sorted(set(job.devices)))}, {job.shards} shards): {rows:,} rows "
                    f"in {job.seconds:.2f} s = {job.rows_per_s:,.0f} rows/s once the actors "
                    f"were ready; {total:.2f} s = {rows / total:,.0f} rows/s with their "
                    f"start-up ({job.startup_s:.2f} s)"
                )
                if args.device == "cuda":
                    print(f"round {repeat}: {sampler.summary()}")
        finally:
            ray.shutdown()
    best_total = min(t for t, _ in ray_s)
    best_job = max(job.rows_per_s for _, job in ray_s)
    print(f"best of {args.repeats}:")
    print(
        f"  Ray job: {best_job:,.0f} rows/s once the actors were ready, "
        f"{rows / best_total:,.0f} rows/s with their start-up"
    )
    if local is not None and outputs is not None:
        local_rate = rows / min(local_s)
        print(f"  local: {local_rate:,.0f} rows/s")
        print(
            f"  Ray job / local: x{best_job / local_rate:.2f} (actors ready), "
            f"x{rows / best_total / local_rate:.2f} (with start-up)"
        )
        print(f"  {_compare(outputs, local)}")


if __name__ == "__main__":
    main()
