"""Benchmark: every built-in distillation loss vs training from scratch, on digits.

One process, no Ray. A CNN teacher is trained on the labels once; its logits and
features are computed once (as the search driver does); then a fixed small CNN
student is trained with each loss at its default hyperparameters (nothing is
searched) and from scratch, over several seeds, with the same epochs, learning rate
and batch size. Prints mean, standard deviation, min and max test accuracy per loss
and the gain over scratch::

    python benchmarks/losses.py                       # 3 seeds, 30 epochs
    python benchmarks/losses.py --seeds 5 --transfer-fraction 0.8
    python benchmarks/losses.py --student-channels 8 16

``--transfer-fraction`` hides the labels of that share of the training rows (they
stay as unlabeled transfer data the teacher still labels softly), the regime where
distillation pays most. The teacher is trained on the labeled rows only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from kdforge.data import DataSplits
from kdforge.interfaces import LossNeeds, LossStrategy, ModelOutput, Teacher
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.resolve import validate_params
from kdforge.plugins.datasets.digits import Digits
from kdforge.search_spaces.cnn import CNNSpace
from kdforge.teacher.outputs import compute_teacher_outputs, training_inputs
from kdforge.training.evaluate import evaluate
from kdforge.training.trainer import TrainSettings, train_model

TEACHER_ARCH = {"depth": 2, "channels_0": 32, "channels_1": 64, "kernel": 3}

#: (label, loss name, params, hparams); unlisted hyperparameters take their defaults.
LOSSES: list[tuple[str, str, dict[str, Any], dict[str, float]]] = [
    ("hinton_kd", "hinton_kd", {}, {}),
    ("logit_mse", "logit_mse", {}, {}),
    ("dkd", "dkd", {}, {}),
    ("fitnets", "fitnets", {}, {}),
    ("attention_transfer", "attention_transfer", {}, {}),
    # The paper's beta=1000 is tuned for 32x32 maps; digits' maps are 4x4 and 2x2.
    ("attention_transfer(beta=10)", "attention_transfer", {}, {"beta": 10.0}),
    ("rkd", "rkd", {}, {}),
    ("cosine_embedding", "cosine_embedding", {}, {}),
    (
        "composite(hinton_kd+fitnets)",
        "composite",
        {"terms": [{"name": "hinton_kd"}, {"name": "fitnets", "params": {"ce_weight": 0.0}}]},
        {},
    ),
]


class _ModuleTeacher(Teacher):
    """A trained in-process model as a teacher (features tapped from ``model``)."""

    name = "benchmark-teacher"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def load(self) -> None:
        """Nothing to load."""

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """Logits in eval mode."""
        self.model.eval()
        return ModelOutput(self.model(x))

    def fingerprint(self) -> str:
        """Unused here."""
        return "benchmark"

    def num_parameters(self) -> int:
        """Parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())


def _make_loss(name: str, params: dict[str, Any], hparams: dict[str, float]) -> LossStrategy:
    record = get_registry().get("loss", name)
    return record.cls(validate_params(record, params, "loss"), hparams)


def _train_teacher(splits: DataSplits, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = CNNSpace().build(TEACHER_ARCH, splits.info)
    train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=epochs, lr=3e-3),
    )
    return model


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--transfer-fraction", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--student-channels", type=int, nargs=2, default=[4, 8], metavar=("C0", "C1")
    )
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="LABEL", help="run only these rows (+ scratch)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    student_arch = {
        "depth": 2,
        "channels_0": args.student_channels[0],
        "channels_1": args.student_channels[1],
        "kernel": 3,
    }

    splits = Digits(Digits.Params(transfer_fraction=args.transfer_fraction)).load(0)
    started = time.perf_counter()
    teacher_model = _train_teacher(splits, args.epochs)
    teacher_acc, _ = evaluate(teacher_model, splits.test.x, splits.test.y)
    teacher = _ModuleTeacher(teacher_model)
    outputs = compute_teacher_outputs(teacher, splits, needs=LossNeeds(features=True))
    train = training_inputs(splits)
    student_params = sum(
        p.numel() for p in CNNSpace().build(student_arch, splits.info).parameters()
    )
    print(
        f"digits: {len(splits.train)} labeled + {len(train) - len(splits.train)} unlabeled "
        f"train rows, {len(splits.test)} test rows; teacher cnn {TEACHER_ARCH} "
        f"({teacher.num_parameters():,} params) test_acc={teacher_acc:.4f} "
        f"[{time.perf_counter() - started:.1f}s]"
    )
    print(
        f"student cnn {student_arch} ({student_params:,} params), {args.epochs} epochs, "
        f"lr {args.lr}, batch 64, seeds 0..{args.seeds - 1}; hparams at their defaults "
        "unless the label says otherwise"
    )

    runs: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    rows = [r for r in LOSSES if args.only is None or r[0] in args.only]
    for label, name, params, hparams in [("scratch", "", {}, {}), *rows]:
        accs = []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            student = CNNSpace().build(student_arch, splits.info)
            loss = _make_loss(name, params, hparams) if name else None
            train_model(
                student,
                x=train.x,
                y=train.y,
                val_x=splits.val.x,
                val_y=splits.val.y,
                settings=TrainSettings(epochs=args.epochs, lr=args.lr, seed=seed),
                loss=loss,
                teacher_logits=outputs.train if loss is not None else None,
                teacher_features=outputs.train_features if loss is not None else None,
            )
            accs.append(evaluate(student, splits.test.x, splits.test.y)[0])
        runs[label] = accs
        seconds[label] = (time.perf_counter() - t0) / args.seeds

    base, _ = _stats(runs["scratch"])
    header = f"{'loss':<30} {'mean':>7} {'std':>7} {'min':>7} {'max':>7} {'gain':>7} {'s/run':>6}"
    print(header)
    print("-" * len(header))
    for label, accs in runs.items():
        mean, std = _stats(accs)
        gain = "" if label == "scratch" else f"{mean - base:+.4f}"
        print(
            f"{label:<30} {mean:7.4f} {std:7.4f} {min(accs):7.4f} {max(accs):7.4f} "
            f"{gain:>7} {seconds[label]:6.1f}"
        )


if __name__ == "__main__":
    main()
