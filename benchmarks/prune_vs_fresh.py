"""Pruned-and-distilled vs fresh distilled students at 10x and 20x fewer parameters.

On a generated, harder-than-digits task (scikit-learn ``make_classification``: 16
classes, 3 clusters per class, 40 features, 2% flipped labels; 6000/1000/1000 rows, or
``--train-rows`` training rows), one MLP teacher (40-512-512-256-16, ~420k parameters)
is trained on the labels. Then, for each budget (teacher parameters / 10 and / 20):

1. **Search** (same budget for both paths: the same number of trained trials and the
   same epochs per trial, the same learning rate or lr range, the same loss): Optuna TPE over

   * (a) the ``mlp`` space (a fresh student, depth 1-3, widths 64-512), and
   * (b) the ``pruned`` space (the teacher cut with 3 per-stage ratios in [0.5, 0.95],
     importance l1/l2/lamp, at most one dropped block),

   each trial distilled with Hinton KD through kdforge's trainer (no Ray: plain loops,
   one process). Like ``kdforge search``, the loss's temperature and alpha are searched
   with the architecture (``--fixed-kd`` keeps their defaults, T=4, alpha=0.5), and
   with ``--search-lr`` so is the learning rate (``kdforge search``'s default range,
   3e-4..3e-2 log; otherwise 2e-3 for every run). A
   sample over the parameter budget is rejected before training and does not count as
   a trial (as ``constraints.max_params`` does in a search). The best trial by
   validation accuracy wins.
2. **Final comparison**, 5 seeds: the winner of each path is trained again (the pruned
   one is cut from the teacher again) and distilled; **scratch** is the fresh winner's
   architecture trained on the labels alone. The share of the teacher-scratch gap a
   path recovers is ``(path - scratch) / (teacher - scratch)`` of mean test accuracies.

Usage::

    python benchmarks/prune_vs_fresh.py [--trials 6] [--epochs 10] [--seeds 5]
        [--train-rows 6000] [--fixed-kd] [--search-lr] [--budgets 10,20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import torch
from sklearn.datasets import make_classification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge import save_checkpoint
from kdforge.data import DataInfo
from kdforge.interfaces import SearchSpace
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.pruned import PrunedSpace
from kdforge.training.evaluate import count_parameters, evaluate, predict_logits
from kdforge.training.trainer import TrainSettings, train_model

TEACHER = {"depth": 3, "width_0": 512, "width_1": 512, "width_2": 256, "dropout": 0.1}
LR = 2e-3
LR_RANGE = (3e-4, 3e-2)  # kdforge search's default `search.lr`
BATCH = 256


def make_data(
    seed: int = 0, train_rows: int = 6000
) -> tuple[DataInfo, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The generated 16-class task, standardised, split train_rows/1000/1000."""
    n = train_rows
    x, y = make_classification(
        n_samples=n + 2000,
        n_features=40,
        n_informative=30,
        n_redundant=5,
        n_classes=16,
        n_clusters_per_class=3,
        class_sep=1.5,
        flip_y=0.02,
        random_state=seed,
    )
    x = (x - x[:n].mean(0)) / x[:n].std(0)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    splits = {
        "train": (xt[:n], yt[:n]),
        "val": (xt[n : n + 1000], yt[n : n + 1000]),
        "test": (xt[n + 1000 :], yt[n + 1000 :]),
    }
    return DataInfo(name="make_classification16", input_shape=(40,), num_classes=16), splits


def train(
    model: torch.nn.Module,
    data: dict[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    seed: int,
    teacher_logits: torch.Tensor | None,
    hparams: dict[str, float] | None = None,
    lr: float = LR,
) -> tuple[float, float]:
    """Train in place (KD when teacher logits are given); ``(val_acc, test_acc)``."""
    x, y = data["train"]
    loss = HintonKD(hparams=hparams) if teacher_logits is not None else None
    train_model(
        model,
        x=x,
        y=y,
        val_x=data["val"][0],
        val_y=data["val"][1],
        settings=TrainSettings(epochs=epochs, lr=lr, batch_size=BATCH, seed=seed),
        loss=loss,
        teacher_logits=teacher_logits,
    )
    return evaluate(model, *data["val"])[0], evaluate(model, *data["test"])[0]


def search(
    space: SearchSpace,
    info: DataInfo,
    data: dict[str, Any],
    logits: torch.Tensor,
    *,
    budget: int,
    trials: int,
    epochs: int,
    seed: int,
    search_loss: bool,
    search_lr: bool = False,
) -> tuple[dict[str, Any], dict[str, float], float, int, int]:
    """TPE within ``budget`` parameters: ``(best arch, loss hparams, val, params, rejected)``.

    With ``search_loss`` the loss's declared hyperparameters (temperature, alpha) are
    sampled too, as ``kdforge search`` does by default; else they keep their defaults.
    With ``search_lr`` the learning rate is sampled in ``kdforge search``'s default range
    and returned in the hparams as ``lr``; else it is :data:`LR`.
    """
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    best: tuple[dict[str, Any], dict[str, float], float, int] = ({}, {}, -1.0, 0)
    rejected = 0
    done = 0
    while done < trials and rejected < 2000:
        trial = study.ask()
        extra = space.suggest(trial, info) or {}
        arch = {**trial.params, **extra}
        torch.manual_seed(seed)
        model = space.build(arch, info)
        n = count_parameters(model)
        if n > budget:
            rejected += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        hparams = {}
        if search_loss:
            for hp in HintonKD.hyperparameters:
                hparams[hp.name] = trial.suggest_float(
                    f"loss/{hp.name}", hp.low, hp.high, log=hp.log
                )
        lr = trial.suggest_float("lr", *LR_RANGE, log=True) if search_lr else LR
        val, _ = train(
            model, data, epochs=epochs, seed=seed, teacher_logits=logits, hparams=hparams, lr=lr
        )
        study.tell(trial, val)
        done += 1
        if val > best[2]:
            best = (arch, {**hparams, "lr": lr} if search_lr else hparams, val, n)
    return best[0], best[1], best[2], best[3], rejected


def final(
    space: SearchSpace,
    arch: dict[str, Any],
    info: DataInfo,
    data: dict[str, Any],
    logits: torch.Tensor | None,
    *,
    seeds: int,
    epochs: int,
    hparams: dict[str, float] | None = None,
) -> list[float]:
    """Test accuracies of ``arch`` trained ``seeds`` times (distilled when logits given).

    ``hparams`` may hold ``lr`` (a searched learning rate) besides the loss's values.
    """
    loss_hp = {k: v for k, v in (hparams or {}).items() if k != "lr"}
    lr = (hparams or {}).get("lr", LR)
    out = []
    for seed in range(seeds):
        torch.manual_seed(1000 + seed)
        model = space.build(dict(arch), info)
        out.append(
            train(
                model,
                data,
                epochs=epochs,
                seed=1000 + seed,
                teacher_logits=logits,
                hparams=loss_hp,
                lr=lr,
            )[1]
        )
    return out


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", default="10,20")
    parser.add_argument("--train-rows", type=int, default=6000)
    parser.add_argument(
        "--fixed-kd", action="store_true", help="keep temperature/alpha at their defaults"
    )
    parser.add_argument(
        "--search-lr",
        action="store_true",
        help=f"search the learning rate in {LR_RANGE} (log), as kdforge search does; "
        f"scratch uses the fresh winner's (default: {LR} for every run)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in logs
    torch.set_num_threads(int(os.environ.get("KDF_BENCH_THREADS", "2")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    print(f"# prune_vs_fresh  {datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    print(f"# command: python benchmarks/prune_vs_fresh.py {' '.join(sys.argv[1:])}")
    print(
        f"# machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads "
        "(shared with other jobs: timings are under load)"
    )
    info, data = make_data(train_rows=args.train_rows)
    torch.manual_seed(0)
    teacher = MLPSpace().build(TEACHER, info)
    _, t_test = train(teacher, data, epochs=args.teacher_epochs, seed=0, teacher_logits=None)
    t_params = count_parameters(teacher)
    logits = predict_logits(teacher, data["train"][0])
    print(f"teacher MLP {TEACHER}: {t_params} params, test acc {t_test:.4f}")

    with tempfile.TemporaryDirectory() as folder:
        path = save_checkpoint(
            Path(folder) / "teacher.pt", space="mlp", arch=TEACHER, info=info, model=teacher
        )
        bound = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
        bound.load()
        pruned = PrunedSpace(
            PrunedSpace.Params(min_ratio=0.5, max_ratio=0.95, stages=3, max_dropped_blocks=1)
        )
        pruned.bind_teacher(bound)
        fresh = MLPSpace(MLPSpace.Params(min_width=64, max_width=512, max_dropout=0.2))
        rows = []
        for factor in [int(f) for f in args.budgets.split(",")]:
            budget = t_params // factor
            results = {}
            for label, space in (("fresh", fresh), ("pruned", pruned)):
                t0 = time.perf_counter()
                arch, hparams, val, n, rejected = search(
                    space,
                    info,
                    data,
                    logits,
                    budget=budget,
                    trials=args.trials,
                    epochs=args.epochs,
                    seed=factor,
                    search_loss=not args.fixed_kd,
                    search_lr=args.search_lr,
                )
                search_s = time.perf_counter() - t0
                accs = final(
                    space,
                    arch,
                    info,
                    data,
                    logits,
                    seeds=args.seeds,
                    epochs=args.epochs,
                    hparams=hparams,
                )
                shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in arch.items()}
                shown.pop("_teacher_recipe", None)
                print(
                    f"{factor}x {label}: best {shown} loss {hparams or 'defaults'} params {n} "
                    f"(teacher/{t_params / n:.1f}) "
                    f"val {val:.4f}; search {search_s:.0f}s, {rejected} samples over budget; "
                    f"test accs {[round(a, 4) for a in accs]}"
                )
                results[label] = (arch, n, accs, hparams)
            scratch = final(
                fresh,
                results["fresh"][0],
                info,
                data,
                None,
                seeds=args.seeds,
                epochs=args.epochs,
                hparams={k: v for k, v in results["fresh"][3].items() if k == "lr"},
            )
            print(
                f"{factor}x scratch (fresh arch and lr, labels only): "
                f"{[round(a, 4) for a in scratch]}"
            )
            s_mean = statistics.mean(scratch)
            gap = t_test - s_mean
            row = [factor, budget, s_mean]
            for label in ("fresh", "pruned"):
                accs = results[label][2]
                mean = statistics.mean(accs)
                row += [results[label][1], mean, statistics.stdev(accs), (mean - s_mean) / gap]
            rows.append(row)
    print()
    print(f"teacher test acc {t_test:.4f} ({t_params} params); {args.seeds} seeds per mean")
    print(
        "| budget | max params | scratch acc | fresh params | fresh KD acc | fresh gap "
        "recovered | pruned params | pruned KD acc | pruned gap recovered |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for f, b, s, fn, fm, fs, fr, pn, pm, ps, pr in rows:
        print(
            f"| {f}x | {b} | {s:.4f} | {fn} | {fm:.4f} ± {fs:.4f} | {fr:.0%} | {pn} | "
            f"{pm:.4f} ± {ps:.4f} | {pr:.0%} |"
        )
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
