"""Vocabulary trimming: what keeping only the corpus's tokens does to a small LM student.

A word-level tokenizer and a small GPT-2 teacher are trained on a *broad* corpus (the
docstrings of the whole installed standard library); the student is distilled on a
*narrow* one (the docstrings of a few packages), as when a general tokenizer meets a
domain corpus. Two students of the same ``hf_lm`` architecture are distilled with the
same budget (``hinton_kd``, same epochs, batches and seed), one with the tokenizer's
full vocabulary (``vocab: full``) and one trimmed to the training corpus's tokens
(``vocab: corpus``), each from random weights and pruned from the teacher
(``init: prune``). Reported per student: parameters (and the share of the embedding),
the share of validation targets outside the kept vocabulary, the token accuracy over
*all* scored validation positions in original ids (an unkept target counts as wrong),
and the perplexity over the positions whose target both students can predict
(``exp`` of the mean ``-log p(target)`` over the same positions: comparable across
vocabularies).

Usage::

    python benchmarks/lm_vocab_trim.py [--epochs 4] [--teacher-steps 300]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from kdforge.config import PluginRef
from kdforge.data import DataInfo, DataSplits, Split
from kdforge.plugin_host.resolve import instantiate
from kdforge.search_spaces.hf_lm import HfLMParams, HfLMSpace
from kdforge.testing.lm import python_docstrings, tiny_lm, token_blocks
from kdforge.training.trainer import TrainSettings, train_model

NARROW = ("json", "email", "http", "urllib", "csv", "sqlite3")
BLOCK = 32


def _causal(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x[:, 1:], torch.full((len(x), 1), -2)], 1)


def _scores(student: Any, x: torch.Tensor, y: torch.Tensor, common: torch.Tensor) -> dict:
    """Accuracy in original ids over all scored positions; -log p over ``common`` ones."""
    with torch.no_grad():
        logits = student.eval()(x)
    kept = student.kept_token_ids
    predicted = logits.argmax(-1)
    if kept is not None:
        predicted = kept[predicted]
    scored = y >= 0
    log_probs = torch.log_softmax(logits.float(), -1)
    target = student.student_ids(y.clamp_min(0)) if kept is not None else y.clamp_min(0)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return {
        "acc": float((predicted == y)[scored].float().mean()),
        "ppl_common": math.exp(float(nll[common].mean())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--broad", type=int, default=6000, help="docstrings for the tokenizer")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.time()
    broad = python_docstrings(args.broad)
    narrow = python_docstrings(packages=NARROW)
    work = Path(tempfile.mkdtemp(prefix="lm_vocab_trim_"))
    teacher_dir = tiny_lm(
        work / "teacher",
        "causal",
        broad,
        hidden=64,
        layers=4,
        heads=4,
        block=BLOCK,
        steps=args.teacher_steps,
        vocab_size=8000,
    )
    teacher_time = time.time() - started
    x = token_blocks(narrow, teacher_dir, BLOCK)
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    n_val = max(32, len(x) // 10)
    val_x, train_x = x[:n_val], x[n_val:]
    train_y, val_y = _causal(train_x), _causal(val_x)
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(str(teacher_dir), local_files_only=True).eval()
    vocab = int(teacher.config.vocab_size)
    info = DataInfo(
        "narrow",
        (BLOCK,),
        vocab,
        "int64",
        vocab_size=vocab,
        pad_token_id=0,
        task="language_modeling",
    )
    splits = DataSplits(info, Split(train_x, train_y), Split(val_x, val_y), Split(val_x, val_y))
    with torch.no_grad():
        teacher_logits = torch.cat([teacher(input_ids=b).logits for b in train_x.split(64)])
        teacher_val = torch.cat([teacher(input_ids=b).logits for b in val_x.split(64)])
    task = instantiate("task", PluginRef(name="language_modeling"), "task")
    rows = []
    kept_ids = None
    for init in ("random", "prune"):
        for vocab_mode in ("full", "corpus"):
            space = HfLMSpace(
                HfLMParams(teacher_path=str(teacher_dir), init=init, vocab=vocab_mode)
            )
            space.bind_teacher(None)
            space.bind_data(splits)
            values = {"layers": 2, "heads": 2, "intermediate": 128}
            if init == "random":
                values = {"layers": 2, "hidden": 32, "heads_h32": 2, "intermediate": 128}
            trial = optuna.trial.FixedTrial(values)
            arch = {**trial.params, **(space.suggest(trial, info) or {})}
            torch.manual_seed(0)
            student = space.build(arch, info)
            if vocab_mode == "corpus":
                kept_ids = student.kept_token_ids
            params = sum(p.numel() for p in student.parameters())
            embedding = student.model.transformer.wte.weight.numel()
            t0 = time.time()
            train_model(
                student,
                x=train_x,
                y=train_y,
                val_x=val_x,
                val_y=val_y,
                settings=TrainSettings(epochs=args.epochs, lr=3e-3, batch_size=32, seed=0),
                loss=instantiate("loss", PluginRef(name="hinton_kd"), "loss"),
                teacher_logits=teacher_logits,
                task=task,
            )
            rows.append((init, vocab_mode, student, params, embedding, time.time() - t0))
    assert kept_ids is not None
    inside = torch.zeros(vocab, dtype=torch.bool)
    inside[kept_ids] = True
    scored = val_y >= 0
    common = scored & inside[val_y.clamp_min(0)]
    outside = float((scored & ~common).sum() / scored.sum())
    teacher_nll = -torch.log_softmax(teacher_val, -1).gather(-1, val_y.clamp_min(0).unsqueeze(-1))
    teacher_acc = float((teacher_val.argmax(-1) == val_y)[scored].float().mean())
    print(
        "# python benchmarks/lm_vocab_trim.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
    )
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.node() or 'machine'}, torch "
        f"{torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"# tokenizer + teacher: {len(broad)} stdlib docstrings, vocabulary {vocab}, GPT-2 "
        f"4L h64 4 heads, {args.teacher_steps} steps ({teacher_time:.0f}s); "
        f"{sum(p.numel() for p in teacher.parameters()):,} parameters"
    )
    print(
        f"# distillation corpus: docstrings of {', '.join(NARROW)}: {len(train_x)} train "
        f"/ {len(val_x)} val blocks of {BLOCK} tokens; kept vocabulary {len(kept_ids)} "
        f"of {vocab} tokens; {outside:.1%} of val targets outside it"
    )
    print(f"# students: 2 layers, {args.epochs} epochs hinton_kd, AdamW 3e-3, batch 32, seed 0")
    print(
        f"teacher: token acc {teacher_acc:.3f}, ppl on in-vocab positions "
        f"{math.exp(float(teacher_nll.squeeze(-1)[common].mean())):.1f}"
    )
    print(
        f"{'init':7} {'vocab':7} {'params':>9} {'embedding':>10} {'emb share':>9} "
        f"{'token acc':>9} {'ppl(in-vocab)':>13} {'train s':>7}"
    )
    for init, vocab_mode, student, params, embedding, seconds in rows:
        s = _scores(student, val_x, val_y, common)
        print(
            f"{init:7} {vocab_mode:7} {params:9,} {embedding:10,} {embedding / params:9.1%} "
            f"{s['acc']:9.3f} {s['ppl_common']:13.1f} {seconds:7.0f}"
        )
    for init in ("random", "prune"):
        full, trimmed = [r for r in rows if r[0] == init]
        print(
            f"{init}: trimmed student has {trimmed[3] / full[3]:.1%} of the full-vocabulary "
            f"student's parameters (x{full[3] / trimmed[3]:.1f} fewer)"
        )


if __name__ == "__main__":
    main()
