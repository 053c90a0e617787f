"""Distilling a small causal LM: teacher, scratch and distilled students, with and without
teacher initialisation, at the same token budget (issue 24, point 10).

Setting (every piece is kdforge's own):

* **Corpus**: the docstrings of this machine's Python standard library, read by the
  ``text_corpus`` dataset (``source: python_stdlib``) with ``packing: false`` and
  ``block_size`` 64: one block per docstring (truncated to 64 tokens, the rest padded
  and never scored), so the dataset's seeded block split (80/10/10, seed 0) is a
  **document-level** train/val/test split. Causal targets (the next token).
* **Tokenizer**: word-level (``kdforge.testing.lm.build_tokenizer``: lower-cased words
  and punctuation, the ``--vocab`` most frequent kept, the rest ``[UNK]``), trained on
  the **training documents only** (the split is reproduced from the dataset's own
  ``split_blocks`` before tokenizing, and checked against the loaded splits).
* **Teacher**: GPT-2 (``--teacher-hidden`` 128, ``--teacher-layers`` 4, 4 heads,
  64 positions, dropout ``--dropout``, 0 by default: a few epochs do not overfit, and
  the students copy the teacher's config) from random weights, trained on the training
  split with labels only by ``kdforge.training.trainer.train_model`` (AdamW, cosine
  schedule, best validation epoch kept), saved as a Hugging Face folder and read back
  by the ``huggingface`` teacher plugin (``task: causal_lm``), whose logits are the
  distillation targets.
* **Students**: one architecture from the ``hf_lm`` space bound to the teacher (2
  layers, hidden 64, 2 heads, feed-forward 256; the embedding counted; the ratio is
  printed), four arms:

  - ``scratch``: ``init: random``, labels only (the task's cross-entropy);
  - ``distilled``: ``init: random``, ``lm_kd`` forward KL (``--temperature``,
    ``--alpha``);
  - ``prune, labels``: ``init: prune`` (Minitron width pruning by activation importance,
    then every other layer), labels only;
  - ``prune, distilled``: ``init: prune`` and ``lm_kd`` as above.

  All arms: the same epochs, batch size, optimizer steps (cosine schedule), learning
  rate (one ``--lr`` for every arm, not tuned per arm) and seeds; the best validation
  epoch is kept (``train_model``). Perplexity = ``exp`` of the mean cross-entropy over
  the scored tokens (the ``language_modeling`` task's metric), on validation and test.
* **Gap recovered** in log-perplexity:
  ``(log ppl_scratch - log ppl_student) / (log ppl_scratch - log ppl_teacher)``, with
  the random-init scratch student as the no-teacher baseline for every arm.
  Target (issue 24): >= 50% for the distilled student, and teacher-initialised students
  better than random ones.

Usage::

    python benchmarks/lm_distillation.py [--epochs 2] [--seeds 0 1] [--alpha 0.5]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from kdforge.config import PluginRef
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets._corpus import stdlib_docstrings
from kdforge.plugins.datasets._lm_blocks import split_blocks
from kdforge.search_spaces.hf_lm import HfLMParams, HfLMSpace
from kdforge.search_spaces.hf_lm_model import HuggingFaceLMStudent
from kdforge.testing.lm import SPECIAL_TOKENS, build_tokenizer
from kdforge.training.evaluate import evaluate
from kdforge.training.trainer import TrainSettings, train_model

ARMS = (
    ("scratch", "random", False),
    ("distilled", "random", True),
    ("prune, labels", "prune", False),
    ("prune, distilled", "prune", True),
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _train_teacher(folder: Path, splits: Any, task: Any, args: argparse.Namespace) -> Any:
    """A GPT-2 trained on the training split, labels only, saved beside its tokenizer."""
    # transformers is the [hf] extra the benchmark needs anyway; imported where used.
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = splits.info.num_classes
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab,
            n_positions=args.block,
            n_embd=args.teacher_hidden,
            n_layer=args.teacher_layers,
            n_head=4,
            bos_token_id=SPECIAL_TOKENS.index("[BOS]"),
            eos_token_id=SPECIAL_TOKENS.index("[EOS]"),
            pad_token_id=0,
            resid_pdrop=args.dropout,
            embd_pdrop=args.dropout,
            attn_pdrop=args.dropout,
        )
    )
    wrapped = HuggingFaceLMStudent(model, "causal", tokenizer_dir=folder, pad_token_id=0)
    result = train_model(
        wrapped,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(
            epochs=args.teacher_epochs, lr=args.teacher_lr, batch_size=args.batch, seed=0
        ),
        task=task,
        on_epoch=lambda r: _log(f"  teacher epoch {r.epoch}: val ppl {r.val_acc:.1f}"),
    )
    model.eval().save_pretrained(folder)
    return result


def _student(space: HfLMSpace, init: str, info: Any, seed: int) -> Any:
    values: dict[str, Any] = {"layers": 2, "heads": 2, "intermediate": 256}
    if init == "random":
        values = {"layers": 2, "hidden": 64, "heads_h64": 2, "intermediate": 256}
    trial = optuna.trial.FixedTrial(values)
    arch = {**trial.params, **(space.suggest(trial, info) or {})}
    torch.manual_seed(seed)
    return space.build(arch, info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=None, help="cap (default: all)")
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--teacher-hidden", type=int, default=128)
    parser.add_argument("--teacher-layers", type=int, default=4)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--teacher-lr", type=float, default=5e-3)
    parser.add_argument(
        "--dropout", type=float, default=0.0, help="teacher's (and so the students') dropout"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_start = os.getloadavg()[0]
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="lm_distillation_"))
    folder = work / "teacher"

    # The dataset's split of one block per document, reproduced to train the tokenizer
    # on the training documents only (no word of val/test leaks into the vocabulary).
    documents = list(stdlib_docstrings([]))[: args.documents]
    train_rows, _, _ = split_blocks(len(documents), 0.1, 0.1, np.random.default_rng([0, 0]))
    build_tokenizer([documents[i] for i in train_rows], folder, vocab_size=args.vocab)
    corpus_params: dict[str, Any] = {
        "source": "python_stdlib",
        "tokenizer": str(folder),
        "block_size": args.block,
        "packing": False,
        "mode": "causal",
        "max_documents": args.documents,
    }
    dataset = instantiate("dataset", PluginRef(name="text_corpus", params=corpus_params), "data")
    splits = dataset.load(0)
    # One block per document and none left out: the same count and seed give the same
    # permutation, so the dataset's train split is exactly the tokenizer's documents.
    blocks = len(splits.train) + len(splits.val) + len(splits.test)
    assert blocks == len(documents), f"{blocks} blocks from {len(documents)} documents"
    assert len(splits.train) == len(train_rows), "the dataset split is not the reproduced one"
    info = splits.info
    task = instantiate(
        "task", PluginRef(name="language_modeling", params={"mode": "causal"}), "task"
    )
    scored = {name: int((s.y >= 0).sum()) for name, s in splits.named_splits().items()}
    unk = SPECIAL_TOKENS.index("[UNK]")
    unk_share = {
        name: float((s.y == unk).sum() / max(1, scored[name]))
        for name, s in splits.named_splits().items()
    }
    truncated = float(np.mean([len(d.split()) >= args.block for d in documents]))
    _log(f"data: {len(splits.train)}/{len(splits.val)}/{len(splits.test)} documents")

    t0 = time.time()
    teacher_result = _train_teacher(folder, splits, task, args)
    teacher_seconds = time.time() - t0
    teacher = instantiate(
        "teacher",
        PluginRef(name="huggingface", params={"path": str(folder), "task": "causal_lm"}),
        "teacher",
    )
    teacher.load()

    def teacher_logits(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([teacher.predict(b).logits for b in x.split(256)])

    t0 = time.time()
    train_logits = teacher_logits(splits.train.x)
    teacher_forward_seconds = time.time() - t0
    teacher_ppl = {
        name: task.metrics(teacher_logits(getattr(splits, name).x), getattr(splits, name).y)[
            "perplexity"
        ]
        for name in ("val", "test")
    }
    teacher_params = _params(teacher._model)
    _log(f"teacher: {teacher_ppl} in {teacher_seconds:.0f}s")

    spaces = {}
    for init in ("random", "prune"):
        space = HfLMSpace(HfLMParams(teacher_path=str(folder), init=init))
        space.bind_teacher(None)
        space.bind_data(splits)
        spaces[init] = space
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in ARMS}
    configs: dict[str, Any] = {}
    for seed in args.seeds:
        for name, init, distil in ARMS:
            student = _student(spaces[init], init, info, seed)
            config = student.model.config
            configs[name] = (config.n_layer, config.n_embd, config.n_head, config.n_inner)
            student_params = _params(student)
            loss = (
                instantiate(
                    "loss",
                    PluginRef(name="lm_kd", params={"divergence": "forward_kl"}),
                    "loss",
                    hparams={"temperature": args.temperature, "alpha": args.alpha},
                )
                if distil
                else None
            )
            t0 = time.time()
            result = train_model(
                student,
                x=splits.train.x,
                y=splits.train.y,
                val_x=splits.val.x,
                val_y=splits.val.y,
                settings=TrainSettings(
                    epochs=args.epochs, lr=args.lr, batch_size=args.batch, seed=seed
                ),
                loss=loss,
                teacher_logits=train_logits if distil else None,
                task=task,
            )
            row = {
                "val": evaluate(student, splits.val.x, splits.val.y, task)[0],
                "test": evaluate(student, splits.test.x, splits.test.y, task)[0],
                "epoch": float(result.best_epoch),
                "seconds": time.time() - t0,
            }
            results[name].append(row)
            _log(f"seed {seed} {name}: {row}")
    assert len(set(configs.values())) == 1, f"students differ: {configs}"

    steps = args.epochs * math.ceil(len(splits.train) / args.batch)
    tokens = args.epochs * scored["train"]
    load_end = os.getloadavg()[0]
    print(
        "$ python benchmarks/lm_distillation.py "
        + " ".join(
            f"--{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else str(v))
            for k, v in vars(args).items()
            if v is not None
        )
    )
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores (shared with other jobs), {args.threads} torch threads, "
        f"python {platform.python_version()}, torch {torch.__version__}, CPU only; "
        f"load average {load_start:.1f} at start, {load_end:.1f} at end; "
        f"total {time.time() - started:.0f}s"
    )
    print(
        f"corpus: text_corpus source python_stdlib, {len(documents)} docstrings, one block "
        f"of {args.block} tokens per docstring (packing: false; {truncated:.0%} of "
        f"docstrings have >= {args.block} words and are cut), document-level split seed 0: "
        f"{len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
        f"documents = {scored['train']:,} / {scored['val']:,} / {scored['test']:,} scored tokens"
    )
    print(
        f"tokenizer: word-level, trained on the training documents only, vocabulary "
        f"{info.num_classes}; [UNK] targets: train {unk_share['train']:.1%}, val "
        f"{unk_share['val']:.1%}, test {unk_share['test']:.1%} (scored like any token)"
    )
    print(
        f"teacher: GPT-2 {args.teacher_layers}L h{args.teacher_hidden} 4 heads, "
        f"{teacher_params:,} parameters, dropout {args.dropout:g}; labels only, "
        f"{args.teacher_epochs} epochs, AdamW "
        f"{args.teacher_lr:g}, batch {args.batch}, best val epoch "
        f"{teacher_result.best_epoch} (val ppl by epoch: "
        f"{', '.join(f'{r.val_acc:.1f}' for r in teacher_result.history)}); trained in "
        f"{teacher_seconds:.0f}s, logits of the "
        f"train split by the huggingface teacher plugin in {teacher_forward_seconds:.0f}s"
    )
    layers, hidden, heads, inner = next(iter(configs.values()))
    print(
        f"students: hf_lm GPT-2 {layers}L h{hidden} {heads} heads ffn{inner}, "
        f"{student_params:,} parameters (teacher / student = "
        f"{teacher_params / student_params:.1f}x, embedding included, tied LM head); "
        f"every arm: {args.epochs} epochs = {steps} AdamW steps of batch {args.batch} "
        f"({tokens:,} scored tokens), lr {args.lr:g} cosine, weight decay 1e-4, best val "
        f"epoch kept; seeds {' '.join(map(str, args.seeds))}; distilled: lm_kd forward_kl "
        f"T={args.temperature:g} alpha={args.alpha:g}"
    )
    print()

    def mean_sd(values: list[float]) -> str:
        if len(values) < 2:
            return f"{values[0]:8.2f}        "
        return f"{statistics.mean(values):8.2f} ± {statistics.stdev(values):5.2f}"

    print(f"{'model':18} {'val ppl':>16} {'test ppl':>16}  per seed (val / test)")
    print(f"{'teacher':18} {teacher_ppl['val']:8.2f}         {teacher_ppl['test']:8.2f}")
    for name, _, _ in ARMS:
        rows = results[name]
        seeds = ", ".join(f"{r['val']:.2f} / {r['test']:.2f}" for r in rows)
        print(
            f"{name:18} {mean_sd([r['val'] for r in rows])} "
            f"{mean_sd([r['test'] for r in rows])}  {seeds}"
        )
    print()

    def recovered(split: str, name: str, baseline: str) -> list[float]:
        t = math.log(teacher_ppl[split])
        out = []
        for r, s in zip(results[name], results[baseline], strict=True):
            scratch = math.log(s[split])
            out.append((scratch - math.log(r[split])) / (scratch - t))
        return out

    print("gap recovered in log-perplexity, (log ppl_scratch - log ppl) / (log ppl_scratch")
    print("- log ppl_teacher), per seed against that seed's random-init scratch student:")
    verdicts = []
    for name in ("distilled", "prune, labels", "prune, distilled"):
        parts = []
        for split in ("val", "test"):
            values = recovered(split, name, "scratch")
            parts.append(
                f"{split} {statistics.mean(values):6.1%} ({', '.join(f'{v:.1%}' for v in values)})"
            )
            if split == "test":
                verdicts.append((name, statistics.mean(values)))
        print(f"  {name:18} {'; '.join(parts)}")
    for split in ("val", "test"):
        # Not as a share of a gap: a pruned student can pass the teacher, and then the
        # "gap" to it is negative.
        diffs = [
            d[split] - lab[split]
            for d, lab in zip(results["prune, distilled"], results["prune, labels"], strict=True)
        ]
        print(
            f"  prune init, distilled minus labels-only {split} ppl: "
            f"{statistics.mean(diffs):+.2f} ({', '.join(f'{v:+.2f}' for v in diffs)})"
        )
    print()
    test = dict(verdicts)
    for name in ("distilled", "prune, distilled"):
        print(
            f"target >= 50% of the gap recovered, {name} (test): "
            f"{'MET' if test[name] >= 0.5 else 'NOT MET'} ({test[name]:.1%})"
        )
    for split in ("val", "test"):
        better = [
            statistics.mean(r[split] for r in results[p])
            < statistics.mean(r[split] for r in results[q])
            for p, q in (("prune, labels", "scratch"), ("prune, distilled", "distilled"))
        ]
        print(
            f"target teacher-initialised beats random ({split}, mean ppl): labels only "
            f"{'yes' if better[0] else 'NO'}, distilled {'yes' if better[1] else 'NO'}"
        )


if __name__ == "__main__":
    main()
