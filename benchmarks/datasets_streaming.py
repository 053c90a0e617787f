"""In-memory indexing vs streaming through a DataLoader: what each path costs per epoch.

Runs, side by side in one process on the same data and seed, ``train_model`` epochs of
a small MLP over

* arrays: a ``.npy`` of float32 rows (held in memory, or memory-mapped and streamed
  with 0 and 2 DataLoader workers);
* images: a folder of PNG files (decoded once and held in memory, or decoded on the fly
  with 0 and 2 workers);

and prints the epoch time of each path and its ratio to the in-memory path. It also
checks that every path trained the same weights. Usage::

    python benchmarks/datasets_streaming.py [--rows 20000] [--images 600] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.plugins.datasets.arrays import Arrays
from kdforge.plugins.datasets.image_folder import ImageFolder
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.training.trainer import TrainSettings, train_model
from tests.plugins.datasets.builders import write_image_folder


def _train(splits, epochs: int) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)
    model = MLPSpace().build({"depth": 2, "width_0": 64, "width_1": 32}, splits.info)
    settings = TrainSettings(epochs=epochs, lr=0.01, batch_size=64, seed=0)
    started = time.perf_counter()
    train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=settings,
    )
    elapsed = (time.perf_counter() - started) / epochs
    return elapsed, torch.cat([p.detach().flatten() for p in model.parameters()])


def _compare(title: str, make, epochs: int, repeats: int) -> None:
    paths = (
        ("in memory", {"storage": "memory"}),
        ("stream, 0 workers", {"storage": "stream", "num_workers": 0}),
        ("stream, 2 workers", {"storage": "stream", "num_workers": 2}),
    )
    loaded = {}
    for label, params in paths:
        started = time.perf_counter()
        loaded[label] = (make(params), time.perf_counter() - started)
    _train(loaded["in memory"][0], 1)  # warm-up (first-call costs)
    best: dict[str, float] = {}
    weights: dict[str, torch.Tensor] = {}
    for _ in range(repeats):  # interleaved, so a busy moment hits every path alike
        for label, _ in paths:
            epoch_s, weights[label] = _train(loaded[label][0], epochs)
            best[label] = min(best.get(label, float("inf")), epoch_s)
    base = best["in memory"]
    print(f"\n{title} (best of {repeats})")
    print(
        f"{'path':<20} {'load s':>8} {'epoch s':>9} {'epoch / in-memory':>18} {'same weights':>13}"
    )
    for label, _ in paths:
        same = torch.equal(weights[label], weights["in memory"])
        print(
            f"{label:<20} {loaded[label][1]:8.2f} {best[label]:9.3f} "
            f"{best[label] / base:18.2f} {same!s:>13}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows of the .npy arrays")
    parser.add_argument("--images", type=int, default=600, help="PNG images in the folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path (best)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rng = np.random.default_rng(0)
        y = np.arange(args.rows) % 10
        x = (rng.normal(size=(10, 128))[y] + rng.normal(size=(args.rows, 128))).astype(np.float32)
        np.save(root / "x.npy", x)
        np.save(root / "y.npy", y)
        _compare(
            f"arrays: {args.rows} rows x 128 float32 (.npy)",
            lambda p: Arrays(
                Arrays.Params(path=str(root / "x.npy"), labels=str(root / "y.npy"), **p)
            ).load(0),
            args.epochs,
            args.repeats,
        )
        images = write_image_folder(root / "images", per_class=args.images // 3)
        _compare(
            f"image_folder: {args.images} PNG files, resized to 3x32x32",
            lambda p: ImageFolder(ImageFolder.Params(root=str(images), image_size=32, **p)).load(0),
            args.epochs,
            args.repeats,
        )


if __name__ == "__main__":
    main()
