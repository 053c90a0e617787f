"""Few labels plus an unlabeled transfer split: a small student from scratch vs distilled.

For each seed, on scikit-learn's digits (the ``digits`` dataset plugin):

1. a teacher (MLP 256-128) is trained on every labeled training row;
2. the same split with ``transfer_fraction`` of the training rows' labels hidden
   (the unlabeled ``transfer`` split) gives the few-label setting;
3. a fixed small student (MLP, one hidden layer of 32) is trained
   * **from scratch** on the few labeled rows (cross-entropy), and
   * **distilled** on the same labeled rows plus the transfer rows (Hinton KD: soft
     targets everywhere, labels only where they exist),
   with the same epochs, learning rate, batch size and initial weights.

It prints the test accuracies and the share of the teacher-scratch gap that
distillation recovers, ``(distilled - scratch) / (teacher - scratch)``, per seed and on
average. One process, no Ray. Usage::

    python benchmarks/transfer.py [--seeds 5] [--transfer-fraction 0.95] [--epochs 60]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.teacher.outputs import training_inputs
from kdforge.training.evaluate import evaluate, predict_logits
from kdforge.training.trainer import TrainSettings, train_model

TEACHER = {"depth": 2, "width_0": 256, "width_1": 128, "dropout": 0.1}
STUDENT = {"depth": 1, "width_0": 32, "dropout": 0.0}


def _train(arch, splits, x, y, settings, loss=None, teacher_logits=None) -> float:
    torch.manual_seed(settings.seed)
    model = MLPSpace().build(arch, splits.info)
    train_model(
        model,
        x=x,
        y=y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=settings,
        loss=loss,
        teacher_logits=teacher_logits,
    )
    return evaluate(model, splits.test.x, splits.test.y)[0]


def run_seed(seed: int, fraction: float, epochs: int, temperature: float, alpha: float) -> dict:
    """Teacher, scratch and distilled test accuracy for one seed."""
    full = Digits().load(seed)
    few = Digits(Digits.Params(transfer_fraction=fraction)).load(seed)
    teacher_settings = TrainSettings(epochs=40, lr=1e-3, seed=seed)
    torch.manual_seed(seed)
    teacher = MLPSpace().build(TEACHER, full.info)
    train_model(
        teacher,
        x=full.train.x,
        y=full.train.y,
        val_x=full.val.x,
        val_y=full.val.y,
        settings=teacher_settings,
    )
    teacher_acc = evaluate(teacher, full.test.x, full.test.y)[0]
    settings = TrainSettings(epochs=epochs, lr=1e-2, batch_size=32, seed=seed)
    both = training_inputs(few)
    # Same optimizer steps: the trainer makes ceil(rows / batch) steps per epoch.
    distilled_steps = epochs * math.ceil(len(both.x) / settings.batch_size)
    scratch_steps_per_epoch = math.ceil(len(few.train) / settings.batch_size)
    same_steps = TrainSettings(
        epochs=math.ceil(distilled_steps / scratch_steps_per_epoch),
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=seed,
    )
    scratch = _train(STUDENT, few, few.train.x, few.train.y, same_steps)
    scratch_epochs = _train(STUDENT, few, few.train.x, few.train.y, settings)
    logits = predict_logits(teacher, both.x)
    loss = HintonKD(hparams={"temperature": temperature, "alpha": alpha})
    distilled = _train(STUDENT, few, both.x, both.y, settings, loss=loss, teacher_logits=logits)
    gap = teacher_acc - scratch
    gap_epochs = teacher_acc - scratch_epochs
    return {
        "seed": seed,
        "labeled": len(few.train),
        "transfer": len(few.transfer) if few.transfer is not None else 0,
        "steps": distilled_steps,
        "scratch_steps": same_steps.epochs * scratch_steps_per_epoch,
        "scratch_epochs_steps": epochs * scratch_steps_per_epoch,
        "teacher": teacher_acc,
        "scratch": scratch,
        "scratch_same_epochs": scratch_epochs,
        "distilled": distilled,
        "recovered": (distilled - scratch) / gap if gap > 0 else float("nan"),
        "recovered_vs_same_epochs": (
            (distilled - scratch_epochs) / gap_epochs if gap_epochs > 0 else float("nan")
        ),
    }


def main() -> None:
    """Run every seed and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--transfer-fraction", type=float, default=0.95)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the soft loss")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"$ python {' '.join(sys.argv)}")
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {platform.node()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine); "
        f"torch {torch.__version__}, 1 thread"
    )
    started = time.perf_counter()
    rows = [
        run_seed(s, args.transfer_fraction, args.epochs, args.temperature, args.alpha)
        for s in range(args.seeds)
    ]
    print(
        f"digits, {args.transfer_fraction:.0%} of training labels hidden; student MLP {STUDENT}; "
        f"KD T={args.temperature} alpha={args.alpha}; distilled {args.epochs} epochs"
    )
    print(
        "optimizer steps: distilled {}, scratch (same steps) {}, scratch (same epochs) {}".format(
            rows[0]["steps"], rows[0]["scratch_steps"], rows[0]["scratch_epochs_steps"]
        )
    )
    print("seed  labeled  transfer  teacher  scratch  scratch(same epochs)  distilled  recovered")
    for r in rows:
        print(
            f"{r['seed']:>4}  {r['labeled']:>7}  {r['transfer']:>8}  {r['teacher']:.4f}   "
            f"{r['scratch']:.4f}   {r['scratch_same_epochs']:.4f}                "
            f"{r['distilled']:.4f}     {r['recovered']:>6.1%}"
        )
    keys = ("teacher", "scratch", "scratch_same_epochs", "distilled", "recovered")
    for key in (*keys, "recovered_vs_same_epochs"):
        values = [r[key] for r in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"mean {key:<24} {statistics.mean(values):.4f} +- {spread:.4f}")
    print(f"({time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
