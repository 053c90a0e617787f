"""Why a pruned-and-distilled student recovers little of the teacher-scratch gap.

Same task and teacher as ``prune_vs_fresh.py`` (generated 16-class data, MLP teacher
40-512-512-256-16). One cut of ~10x fewer parameters (``ratio`` 0.7, l1), ``--epochs``
of training for every path, ``--seeds`` seeds each, test accuracy mean ± sd:

1. the teacher's accuracy and confidence (mean top softmax probability) on train and
   test rows: a teacher that fits its training rows almost exactly gives nearly one-hot
   targets there, so distillation on those rows adds little to the labels;
2. the cut teacher's accuracy before any training, at several ratios;
3. the 0.7 cut fine-tuned with Hinton KD at several learning rates (``--lr`` is the
   one sections 4-6 use);
4. the same cut reached in 3 steps (each removing ~33% of what is left) with a short
   distillation between them (the epochs split in 3), against one-shot;
5. the cut's architecture re-initialised: trained on labels only, and distilled;
6. a check of the explanation in 1: the same KD (T=4, alpha=0.5, same optimiser and
   epochs), the teacher queried online, once on the training rows and once on mixup
   inputs (two training rows blended, weight ~ U(0, 1)), where the teacher's outputs are
   no longer the memorised labels; the inherited 0.7 cut and the re-initialised one.

Usage::

    python benchmarks/prune_diagnostics.py [--seeds 3] [--epochs 10] [--lr 2e-3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prune_vs_fresh import BATCH, LR, TEACHER, make_data

from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.search_spaces._cut import apply_cut, example_batch
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.training.evaluate import count_parameters, evaluate, predict_logits
from kdforge.training.trainer import TrainSettings, train_model

RATIO = 0.7
STEPS = 3


def fit(model, data, logits, *, epochs: int, lr: float, seed: int) -> None:
    """Train in place: Hinton KD (defaults) when logits are given, else labels only."""
    train_model(
        model,
        x=data["train"][0],
        y=data["train"][1],
        val_x=data["val"][0],
        val_y=data["val"][1],
        settings=TrainSettings(epochs=epochs, lr=lr, batch_size=BATCH, seed=seed),
        loss=HintonKD(hparams={}) if logits is not None else None,
        teacher_logits=logits,
    )


def fit_online(model, teacher, data, *, epochs: int, lr: float, seed: int, mixup: bool) -> None:
    """Hinton KD with the teacher queried per batch, on the rows or on mixup inputs.

    The same optimiser, schedule and loss as ``fit`` (AdamW, cosine, T=4, alpha=0.5);
    only the inputs of the soft term differ.
    """
    x, y = data["train"]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    temp = 4.0
    teacher.eval()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(BATCH):
            xb, yb = x[idx], y[idx]
            soft_x = xb
            if mixup:
                lam = torch.rand(len(xb), 1, generator=gen)
                soft_x = lam * xb + (1 - lam) * xb[torch.randperm(len(xb), generator=gen)]
            with torch.no_grad():
                t = teacher(soft_x)
            hard = torch.nn.functional.cross_entropy(model(xb), yb)
            soft = torch.nn.functional.kl_div(
                (model(soft_x) / temp).log_softmax(-1),
                (t / temp).log_softmax(-1),
                log_target=True,
                reduction="batchmean",
            )
            loss = 0.5 * hard + 0.5 * temp**2 * soft
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def stats(values: list[float]) -> str:
    """Mean ± sd of test accuracies."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}  {[round(v, 4) for v in values]}"


def main() -> None:
    """Print the diagnostics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every student")
    parser.add_argument("--lr", type=float, default=LR, help="lr of sections 4-6")
    args = parser.parse_args()
    epochs_all, lr = args.epochs, args.lr
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    torch.set_num_threads(int(os.environ.get("KDF_BENCH_THREADS", "2")))
    started = time.perf_counter()
    print(f"# prune_diagnostics  {datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    print(f"# command: python benchmarks/prune_diagnostics.py {' '.join(sys.argv[1:])}")
    print(
        f"# machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (shared with other jobs: under load)"
    )
    info, data = make_data()
    torch.manual_seed(0)
    teacher = MLPSpace().build(TEACHER, info)
    fit(teacher, data, None, epochs=30, lr=LR, seed=0)
    logits = predict_logits(teacher, data["train"][0])
    conf = {
        split: predict_logits(teacher, data[split][0]).softmax(-1).amax(-1).mean().item()
        for split in ("train", "test")
    }
    print(
        f"1. teacher: train acc {evaluate(teacher, *data['train'])[0]:.4f} "
        f"(confidence {conf['train']:.3f}), test acc {evaluate(teacher, *data['test'])[0]:.4f} "
        f"(confidence {conf['test']:.3f})"
    )
    example = example_batch(info)
    for ratio in (0.3, 0.5, 0.7, 0.85):
        cut = apply_cut(teacher, example, ratios=[ratio], importance="l1")
        print(
            f"2. cut ratio {ratio}: {count_parameters(cut)} params, test acc before training "
            f"{evaluate(cut, *data['test'])[0]:.4f}"
        )
    for each_lr in sorted({5e-3, LR, 5e-4, lr}, reverse=True):
        accs = []
        for seed in range(args.seeds):
            cut = apply_cut(teacher, example, ratios=[RATIO], importance="l1")
            fit(cut, data, logits, epochs=epochs_all, lr=each_lr, seed=seed)
            accs.append(evaluate(cut, *data["test"])[0])
        print(f"3. one-shot {RATIO} cut, KD {epochs_all} epochs, lr {each_lr:g}: {stats(accs)}")
    step_ratio = 1 - (1 - RATIO) ** (1 / STEPS)
    split = [epochs_all // STEPS] * (STEPS - 1)
    split.append(epochs_all - sum(split))
    accs, n = [], 0
    for seed in range(args.seeds):
        model = teacher
        for epochs in split:
            model = apply_cut(model, example, ratios=[step_ratio], importance="l1")
            fit(model, data, logits, epochs=epochs, lr=lr, seed=seed)
        accs.append(evaluate(model, *data["test"])[0])
        n = count_parameters(model)
    print(
        f"4. iterative: {STEPS} cuts of {step_ratio:.3f} ({n} params), KD {split} epochs, "
        f"lr {lr:g}: {stats(accs)}"
    )
    for label, use in (("labels only", None), ("KD", logits)):
        accs = []
        for seed in range(args.seeds):
            cut = apply_cut(teacher, example, ratios=[RATIO], importance="l1")
            torch.manual_seed(1000 + seed)
            for module in cut.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
            fit(cut, data, use, epochs=epochs_all, lr=lr, seed=seed)
            accs.append(evaluate(cut, *data["test"])[0])
        print(
            f"5. {RATIO} cut re-initialised, {label}, {epochs_all} epochs, lr {lr:g}: {stats(accs)}"
        )
    for label, inherit in (("inherited", True), ("re-initialised", False)):
        for mixup in (False, True):
            accs = []
            for seed in range(args.seeds):
                cut = apply_cut(teacher, example, ratios=[RATIO], importance="l1")
                if not inherit:
                    torch.manual_seed(1000 + seed)
                    for module in cut.modules():
                        if callable(getattr(module, "reset_parameters", None)):
                            module.reset_parameters()
                fit_online(cut, teacher, data, epochs=epochs_all, lr=lr, seed=seed, mixup=mixup)
                accs.append(evaluate(cut, *data["test"])[0])
            where = "mixup inputs" if mixup else "training rows"
            print(
                f"6. {RATIO} cut {label}, online KD on {where}, {epochs_all} epochs, "
                f"lr {lr:g}: {stats(accs)}"
            )
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
