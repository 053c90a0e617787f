"""Teacher-output cache of a language model: size and build time, top-k against full.

A tiny GPT-2 teacher (``kdforge.testing.lm.tiny_lm``, a ~2k-token word-level
vocabulary, trained for a few hundred steps on the standard library's docstrings) gives
``(rows, positions, V)`` logits on the corpus' token blocks. The teacher-output cache is
built (a cold entry) for

* ``top_k`` 8 and 32 per position (values in ``--dtype``, int32 ids, fp32 log-sum-exp);
* the full vocabulary, dense (``top_k: null``, the status quo) and as top-k with k = V;

and for each it prints the size estimate the cache prints before building, the bytes
on disk, and the build time (teacher forward + encoding + writing). It then compares
``lm_kd`` on a batch (a smaller, briefly trained GPT-2 as the student) computed on the
top-k rows with the full-vocabulary value, and the validation perplexity of that student
after ``--epochs`` of ``lm_kd`` (forward KL, T = 1, alpha = 0.5) on each cache, beside the
same student trained on the labels alone. Usage::

    python benchmarks/lm_topk_cache.py [--blocks 400] [--block 64] [--dtype float16]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.data import NOT_A_WORD, DataInfo, DataSplits, ModelOutput, Split
from kdforge.plugins.losses.lm_kd import LMKD, LMKDParams
from kdforge.plugins.tasks.language_modeling import LanguageModeling
from kdforge.plugins.teachers.in_memory import InMemoryTeacher
from kdforge.teacher.cache import estimate_cache_size, human_bytes, prepare_teacher_outputs
from kdforge.testing.lm import python_docstrings, tiny_lm, token_blocks
from kdforge.training.trainer import TrainSettings, train_model


class _Logits(nn.Module):
    """A Hugging Face causal LM as ids -> logits (what the trainer calls)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits


def _student_ppl(folder: Path, splits: DataSplits, teacher_rows: object, epochs: int) -> float:
    """Validation perplexity of the student after ``epochs`` (``lm_kd``, or labels alone)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    student = _Logits(AutoModelForCausalLM.from_pretrained(str(folder)))
    task = LanguageModeling()
    loss = None
    if teacher_rows is not None:
        loss = LMKD(LMKDParams(), {"alpha": 0.5, "temperature": 1.0})
        loss.task = task
    train_model(
        student,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=epochs, lr=3e-3, batch_size=16, seed=0),
        loss=loss,
        teacher_logits=teacher_rows,  # type: ignore[arg-type]
        task=task,
    )
    with torch.no_grad():
        logits = student(splits.val.x)
    return task.metrics(logits, splits.val.y)["perplexity"]


def _splits(x: torch.Tensor, vocab: int) -> DataSplits:
    y = torch.full_like(x, NOT_A_WORD)
    y[:, :-1] = x[:, 1:]
    n = len(x)
    a, b = int(n * 0.8), int(n * 0.9)
    info = DataInfo(
        name="docstrings",
        input_shape=(x.shape[1],),
        num_classes=vocab,
        input_dtype="int64",
        vocab_size=vocab,
        pad_token_id=0,
        task="language_modeling",
    )
    return DataSplits(info, Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]))


def main() -> None:
    """Build the teacher, then one cold cache entry per setting; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=400, help="Token blocks in the corpus.")
    parser.add_argument("--block", type=int, default=64, help="Tokens per block.")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--steps", type=int, default=300, help="Teacher training steps.")
    parser.add_argument("--epochs", type=int, default=2, help="Student epochs per cache.")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    argv = " ".join(sys.argv[1:])
    print(f"$ python benchmarks/lm_topk_cache.py {argv}".rstrip())
    print(
        f"date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {platform.python_version()}, "
        f"torch {torch.__version__}, CPU only"
    )
    work = Path(tempfile.mkdtemp(prefix="lm-topk-"))
    try:
        texts = python_docstrings()
        started = time.perf_counter()
        tiny_lm(
            work / "teacher",
            "causal",
            texts,
            hidden=64,
            layers=2,
            heads=2,
            block=args.block,
            steps=args.steps,
            vocab_size=2000,
        )
        tiny_lm(
            work / "student",
            "causal",
            texts,
            hidden=16,
            layers=1,
            heads=2,
            block=args.block,
            steps=args.steps // 3,
            vocab_size=2000,
            seed=1,
        )
        print(f"teacher and student trained in {time.perf_counter() - started:.1f}s")
        teacher_model = AutoModelForCausalLM.from_pretrained(str(work / "teacher"))
        student_model = AutoModelForCausalLM.from_pretrained(str(work / "student"))
        vocab = int(teacher_model.config.vocab_size)
        x = token_blocks(texts, work / "teacher", args.block)[: args.blocks]
        splits = _splits(x, vocab)
        teacher = InMemoryTeacher(InMemoryTeacher.Params(key=InMemoryTeacher.hold(teacher_model)))
        teacher.load()
        print(
            f"corpus: {len(x)} blocks x {args.block} tokens ({len(x) * args.block:,} positions), "
            f"V = {vocab}; teacher {sum(p.numel() for p in teacher_model.parameters()):,} params; "
            f"storage dtype {args.dtype}"
        )
        batch = splits.train.x[:32]
        labels = splits.train.y[:32]
        with torch.no_grad():
            student_logits = student_model(input_ids=batch).logits
            dense_teacher = teacher_model(input_ids=batch).logits
        with torch.no_grad():
            val_logits = teacher_model(input_ids=splits.val.x).logits
        task = LanguageModeling()
        print(f"teacher val perplexity {task.metrics(val_logits, splits.val.y)['perplexity']:.1f}")
        probs = torch.softmax(dense_teacher, -1).sort(-1, descending=True).values
        print(
            "teacher top-k probability mass (mean over positions): "
            + ", ".join(f"k={k}: {float(probs[..., :k].sum(-1).mean()):.3f}" for k in (8, 32))
        )
        scratch = _student_ppl(work / "student", splits, None, args.epochs)
        print(f"student val perplexity, labels only, {args.epochs} epochs: {scratch:.1f}")
        print()
        print(
            f"{'setting':<16}{'estimate':>11}{'on disk':>11}{'build s':>9}"
            f"{'fwd T=1':>9}{'fwd T=2':>9}{'rev T=1':>9}{'jsd T=1':>9}{'student ppl':>13}"
        )
        for label, top_k in (
            ("top_k 8", 8),
            ("top_k 32", 32),
            ("full, dense", None),
            ("full, top_k=V", vocab),
        ):
            settings = TeacherCacheSettings(top_k=top_k, dtype=args.dtype)
            size, _ = estimate_cache_size(splits, settings)
            folder = work / f"cache-{label.replace(' ', '_')}"
            started = time.perf_counter()
            outputs = prepare_teacher_outputs(
                teacher, splits, settings, cache_dir=folder, emit=lambda _: None
            )
            seconds = time.perf_counter() - started
            disk = sum(f.stat().st_size for f in folder.rglob("*.npy"))
            rows = outputs.train[torch.arange(32)]
            relative = []
            for divergence, temperature in (
                ("forward_kl", 1.0),
                ("forward_kl", 2.0),
                ("reverse_kl", 1.0),
                ("gjsd", 1.0),
            ):
                loss = LMKD(
                    LMKDParams(divergence=divergence),
                    {"alpha": 1.0, "temperature": temperature, "beta": 0.5},
                )
                loss.task = task
                full = loss(ModelOutput(student_logits), ModelOutput(dense_teacher), labels)
                cached = loss(ModelOutput(student_logits), ModelOutput(rows), labels)
                relative.append(cached.parts["kd"] / full.parts["kd"])
            ppl = _student_ppl(work / "student", splits, outputs.train, args.epochs)
            print(
                f"{label:<16}{human_bytes(size):>11}{human_bytes(disk):>11}{seconds:>9.2f}"
                + "".join(f"{r:>9.4f}" for r in relative)
                + f"{ppl:>13.1f}"
            )
            shutil.rmtree(folder, ignore_errors=True)
        print()
        print(
            "fwd/rev/jsd: lm_kd's KD term (forward KL, reverse KL, JSD beta=0.5) on the cached "
            "rows divided by the same term on the teacher's dense fp32 logits, 32 blocks, the "
            "student before training (1.0000 = identical; the full rows are stored in "
            f"{args.dtype}). student ppl: validation perplexity of the smaller GPT-2 after "
            f"{args.epochs} epochs of lm_kd (forward_kl, T=1, alpha=0.5) on that cache."
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
