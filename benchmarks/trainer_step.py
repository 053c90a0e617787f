"""The training loop alone: kdforge's trainer vs a plain loop, and fused vs default AdamW.

One process, no Ray, no MLflow: the same student (an MLP of the ``mlp`` space, 64-128-64-10),
data (generated, as in ``search_overhead.py``), teacher logits, ``hinton_kd`` at T=4,
alpha=0.5, batch 64, trained side by side, best of ``--repeats`` runs each, at 1 and 2
torch threads:

* ``kdforge``: :func:`kdforge.training.trainer.train_model` (fused AdamW via ``make_optimizer``);
* ``plain (fused)``: the hand-written loop of ``search_overhead.py`` with the same fused
  AdamW kernel (so the difference is the trainer's own per-step cost);
* ``plain (default)``: the same loop with torch's default AdamW (on CPU a Python loop
  over the parameters), the loop most users write.

Usage::

    python benchmarks/trainer_step.py [--rows 20000] [--epochs 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_overhead import archs, make_data, plain_trial

from kdforge.data import DataInfo
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.training.trainer import TrainSettings, train_model

_ARCH = archs(4)[3]  # depth 2, widths 128 and 64


def kdforge_trial(data: dict[str, torch.Tensor], epochs: int) -> float:
    """Seconds :func:`train_model` takes for the student."""
    torch.manual_seed(1)
    info = DataInfo(name="generated", input_shape=(64,), num_classes=10)
    model = MLPSpace(MLPSpace.Params()).build(_ARCH, info)
    loss = HintonKD(HintonKD.Params(), {"temperature": 4.0, "alpha": 0.5})
    started = time.perf_counter()
    train_model(
        model,
        x=data["x_train"],
        y=data["y_train"],
        val_x=data["x_val"],
        val_y=data["y_val"],
        settings=TrainSettings(epochs=epochs, lr=3e-3, batch_size=64, seed=1),
        loss=loss,
        teacher_logits=data["teacher"],
    )
    return time.perf_counter() - started


def main() -> None:
    """Train the student each way at 1 and 2 threads and print the times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_data(args.rows, Path(tmp))
        arrays = np.load(folder / "data.npz")
        data = {key: torch.from_numpy(arrays[key]) for key in arrays.files}
        data["teacher"] = torch.from_numpy(np.load(folder / "teacher_logits.npy"))
    ways = {
        "kdforge": lambda: kdforge_trial(data, args.epochs),
        "plain (fused)": lambda: plain_trial(1, _ARCH, data, args.epochs, 64, "fused")["seconds"],
        "plain (default)": lambda: plain_trial(1, _ARCH, data, args.epochs, 64, "default")[
            "seconds"
        ],
    }
    print(f"{args.rows} rows x {args.epochs} epochs, batch 64, best of {args.repeats}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for way in ways.values():  # warm-up: first-call imports and allocations
            way()
        best = {name: min(way() for _ in range(args.repeats)) for name, way in ways.items()}
        fused = best["plain (fused)"]
        print(
            f"  {threads} thread(s): "
            + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in best.items())
        )
        print(
            f"    kdforge / plain (fused) {best['kdforge'] / fused:.2f}; "
            f"plain fused / default AdamW {fused / best['plain (default)']:.2f}"
        )


if __name__ == "__main__":
    main()
