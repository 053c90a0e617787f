"""GPU smoke check: a tiny kdforge search on CUDA, with the device and timings printed.

Needs a CUDA GPU. Prints the GPU, then times one fixed student trained on the CPU, on
CUDA in fp32 and on CUDA in bf16 side by side, then runs a small search with
fractional GPUs per trial (several trials share the GPU) and prints where each trial
ran and how long the search took. Results of a run are recorded, dated, in
benchmarks/README.md.

    python benchmarks/gpu_smoke.py [--trials 8] [--epochs 10] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _time_training(device: str, precision: str, epochs: int) -> tuple[float, float]:
    import torch

    from kdforge.plugins.datasets.digits import Digits
    from kdforge.search_spaces.cnn import CNNSpace
    from kdforge.training.evaluate import evaluate
    from kdforge.training.trainer import TrainSettings, train_model

    splits = Digits().load(0)
    torch.manual_seed(0)
    model = CNNSpace().build(
        {"depth": 3, "channels_0": 32, "channels_1": 64, "channels_2": 128, "kernel": 3},
        splits.info,
    )
    settings = TrainSettings(
        epochs=epochs, lr=3e-3, batch_size=128, device=device, precision=precision
    )
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=settings,
    )
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    acc, _ = evaluate(model, splits.test.x.to(device), splits.test.y.to(device))
    return seconds, acc


def main() -> None:
    """Run the smoke check and print what it measured."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tracking-uri", default=None, help="default: a file: store in a temp dir")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this smoke check needs a GPU")
    print(
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"device {torch.cuda.get_device_name(0)}"
    )

    print("\n== one fixed CNN student, digits, side by side ==")
    for device, precision in [
        ("cpu", "fp32"),
        ("cuda", "fp32"),
        ("cuda", "bf16"),
        ("cuda", "fp16"),
    ]:
        _time_training(device, precision, 1)  # warm-up (CUDA context, kernels)
        seconds, acc = _time_training(device, precision, args.epochs)
        print(
            f"{device:>4} {precision}: {args.epochs} epochs in {seconds:6.2f}s  test_acc={acc:.4f}"
        )

    from kdforge.config import SearchConfig, TeacherConfig
    from kdforge.search.driver import run_search
    from kdforge.teacher.train_teacher import train_teacher

    work = Path(tempfile.mkdtemp(prefix="kdforge-gpu-"))
    uri = args.tracking_uri or (work / "mlruns").as_uri()
    teacher = TeacherConfig.model_validate(
        {
            "name": "gpu-teacher",
            "dataset": {"name": "digits"},
            "architecture": {"name": "mlp", "params": {"depth": 2, "width_0": 512, "width_1": 256}},
            "training": {"epochs": 20},
            "output": str(work / "teacher.pt"),
            "tracking": {"uri": uri},
        }
    )
    started = time.perf_counter()
    train_teacher(teacher, emit=lambda _: None)
    print(f"\nteacher trained in {time.perf_counter() - started:.1f}s")

    gpus = 0.25
    config = SearchConfig.model_validate(
        {
            "name": "gpu-smoke",
            "output_dir": str(work / "runs"),
            "dataset": {"name": "digits"},
            "teacher": {"name": "checkpoint", "params": {"path": str(work / "teacher.pt")}},
            "student": {"name": "cnn", "params": {"max_channels": 64}},
            "search": {
                "num_trials": args.trials,
                "epochs": args.epochs,
                "grace_period": 2,
                "cpus_per_trial": 1,
                "gpus_per_trial": gpus,
                "precision": "bf16",
                "max_concurrent": 4,
            },
            "baseline": {"enabled": False},
            "export": {"enabled": False},
            "tracking": {"uri": uri},
        }
    )
    print(f"== search: {args.trials} trials, {gpus} GPU each (4 share the GPU), bf16 ==")
    started = time.perf_counter()
    result = run_search(config, emit=print)
    wall = time.perf_counter() - started

    devices: dict[str, int] = {}
    for row in result.rows:
        devices[row.device or "?"] = devices.get(row.device or "?", 0) + 1
    print(f"\nsearch wall time {wall:.1f}s for {len(result.rows)} trials; trial devices: {devices}")
    best = result.best
    if best is not None:
        print(f"best trial {best.number:03d}: val_acc={best.val_acc:.4f} params={best.params:,}")
    print(f"visible GPUs: {os.environ.get('CUDA_VISIBLE_DEVICES', 'all')}")


if __name__ == "__main__":
    main()
