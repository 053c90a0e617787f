"""Which learning rates train each search space's students, on a few datasets.

Informs the default ``search.lr`` range (issue #22: the transformer example's range
1e-4..3e-3 was too low). For each (space, dataset) a few students are sampled from the
space (Optuna random sampler, seeded), and each is trained from scratch with AdamW
(weight decay 1e-4, batch 64, as a trial does) at every learning rate of a log grid;
the validation accuracy after ``--epochs`` epochs is averaged over the students. No
Ray, no MLflow, no teacher: the point is where the learning rate works, which the
teacher's soft targets do not move much.

Datasets (all local; scikit-learn's are bundled with it): digits (8x8 images, 10
classes: ``mlp`` flattened and ``cnn``), wine and breast cancer (standardised tables:
``mlp``), and two synthetic token-id text tasks (3 and 4 classes, class words among
filler words: ``transformer``).

Usage::

    python benchmarks/lr_ranges.py [--epochs 15] [--students 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
import optuna
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split

from kdforge.data import DataInfo
from kdforge.interfaces import SearchSpace
from kdforge.search_spaces.cnn import CNNSpace
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.transformer import TransformerSpace

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
Data = tuple[DataInfo, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _split(x: np.ndarray, y: np.ndarray, info: DataInfo, standardize: bool) -> Data:
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    if standardize:
        mean, std = x_train.mean(0), x_train.std(0) + 1e-8
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    dtype = torch.int64 if info.input_dtype == "int64" else torch.float32
    return (
        info,
        torch.as_tensor(x_train, dtype=dtype),
        torch.as_tensor(y_train, dtype=torch.int64),
        torch.as_tensor(x_val, dtype=dtype),
        torch.as_tensor(y_val, dtype=torch.int64),
    )


def digits(image: bool) -> Data:
    bunch = load_digits()
    x = bunch.data / 16.0
    shape = (1, 8, 8) if image else (64,)
    return _split(x.reshape(-1, *shape), bunch.target, DataInfo("digits", shape, 10), False)


def table(loader: Callable) -> Data:
    bunch = loader()
    info = DataInfo(loader.__name__.removeprefix("load_"), (bunch.data.shape[1],), 2)
    info = DataInfo(info.name, info.input_shape, int(bunch.target.max()) + 1)
    return _split(bunch.data, bunch.target, info, True)


def tokens(classes: int, rows: int, length: int = 16, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    vocab, words_per_class = 200, 5
    class_words = rng.choice(np.arange(10, vocab), (classes, words_per_class), replace=False)
    y = np.arange(rows) % classes
    x = rng.integers(10, vocab, (rows, length))
    for row, label in enumerate(y):  # two class words at random places, one noisy row in 10
        spots = rng.choice(length, 2, replace=False)
        label_shown = label if rng.random() > 0.1 else rng.integers(classes)
        x[row, spots] = rng.choice(class_words[label_shown], 2)
    x[:, -3:] = 0  # padding
    info = DataInfo(
        f"tokens{classes}",
        (length,),
        classes,
        input_dtype="int64",
        vocab_size=vocab,
        pad_token_id=0,
    )
    return _split(x, y, info, False)


def students(space: SearchSpace, info: DataInfo, n: int) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(n):
        trial = study.ask()
        extra = space.suggest(trial, info) or {}
        out.append({**trial.params, **extra})
        study.tell(trial, 0.0)
    return out


def train(model: torch.nn.Module, data: Data, lr: float, epochs: int, seed: int) -> float:
    _, x, y, x_val, y_val = data
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return float((model(x_val).argmax(1) == y_val).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--students", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases: list[tuple[str, SearchSpace, Data]] = [
        ("mlp", MLPSpace(MLPSpace.Params(max_depth=2, max_width=64)), digits(False)),
        ("mlp", MLPSpace(MLPSpace.Params(max_depth=2, max_width=64)), table(load_wine)),
        ("mlp", MLPSpace(MLPSpace.Params(max_depth=2, max_width=64)), table(load_breast_cancer)),
        ("cnn", CNNSpace(), digits(True)),
        ("transformer", TransformerSpace(), tokens(3, 600)),
        ("transformer", TransformerSpace(), tokens(4, 800, seed=1)),
    ]
    print(f"# python benchmarks/lr_ranges.py --epochs {args.epochs} --students {args.students}")
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.node()}, {torch.get_num_threads()} thread")
    print("# validation accuracy, mean over the sampled students, per learning rate")
    print(f"{'space':12s} {'dataset':14s} " + " ".join(f"{lr:>7g}" for lr in GRID) + "   best")
    for name, space, data in cases:
        info = data[0]
        archs = students(space, info, args.students)
        means = []
        started = time.perf_counter()
        for lr in GRID:
            accs = [
                train(space.build(a, info), data, lr, args.epochs, i) for i, a in enumerate(archs)
            ]
            means.append(float(np.mean(accs)))
        best = GRID[int(np.argmax(means))]
        cells = " ".join(f"{m:7.3f}" for m in means)
        print(
            f"{name:12s} {info.name:14s} {cells}   {best:g} ({time.perf_counter() - started:.0f}s)"
        )


if __name__ == "__main__":
    main()
