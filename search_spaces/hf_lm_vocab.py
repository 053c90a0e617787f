"""The tokenizer an ``hf_lm`` student shares with its teacher, and its corpus vocabulary.

:func:`tokenizer_facts` loads the teacher folder's tokenizer (offline) and keeps what a
student needs of it: its size and special ids; a folder without a tokenizer is refused
(the student could not share it). :func:`corpus_vocabulary` lists the token ids a
trimmed student keeps: every special token and every token seen at least ``min_count``
times in the training corpus.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from kdforge.errors import ConfigError

__all__ = ["TokenizerFacts", "corpus_vocabulary", "tokenizer_facts"]


@dataclass(frozen=True)
class TokenizerFacts:
    """What a student needs to know of the tokenizer it shares.

    Attributes:
        size: Number of tokens (``len(tokenizer)``).
        special_ids: Ids of the special tokens (kept by every trimmed vocabulary).
        pad_token_id: Padding id, or None.
        unk_token_id: Unknown-token id, or None.
    """

    size: int
    special_ids: tuple[int, ...]
    pad_token_id: int | None
    unk_token_id: int | None


def tokenizer_facts(folder: str | Path, where: str) -> TokenizerFacts:
    """Load the tokenizer of a teacher folder and describe it.

    Raises:
        ConfigError: the folder has no tokenizer that loads offline.
    """
    # transformers is the optional [hf] extra; only LM students need it.
    from transformers import AutoTokenizer

    folder = Path(folder).expanduser()
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
    if not any((folder / name).is_file() for name in files):
        raise ConfigError(
            f"{where}: teacher folder {folder} has no tokenizer, so a student cannot share it",
            hint="save the tokenizer beside the teacher (tokenizer.save_pretrained(folder))",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{where}: the tokenizer of {folder} does not load: {str(exc).splitlines()[0][:200]}",
            hint="save the tokenizer beside the teacher (tokenizer.save_pretrained(folder))",
        ) from None
    return TokenizerFacts(
        size=len(tokenizer),
        special_ids=tuple(sorted({int(i) for i in tokenizer.all_special_ids})),
        pad_token_id=tokenizer.pad_token_id,
        unk_token_id=tokenizer.unk_token_id,
    )


def corpus_vocabulary(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    facts: TokenizerFacts,
    vocab_size: int,
    min_count: int = 1,
) -> list[int]:
    """Sorted original ids a trimmed student keeps: the corpus's tokens and the specials.

    The corpus is read as the *original* tokens: the target where a position is scored
    (a masked LM's input there is ``[MASK]`` or a random token), the input elsewhere.

    Args:
        batches: ``(token ids (n, T), targets (n, T))`` of the training split, in
            batches (``-1``/``-2`` targets where not scored).
        facts: The shared tokenizer.
        vocab_size: The teacher's vocabulary size (ids are below it).
        min_count: Keep tokens seen at least this many times.
    """
    counts = torch.zeros(vocab_size, dtype=torch.int64)
    for x, y in batches:
        tokens = torch.where(y >= 0, y, x) if y.shape == x.shape else x
        tokens = tokens[(tokens >= 0) & (tokens < vocab_size)]
        counts += torch.bincount(tokens.reshape(-1), minlength=vocab_size)
    keep = counts >= min_count
    for special in facts.special_ids:
        if special < vocab_size:
            keep[special] = True
    return [int(i) for i in keep.nonzero().reshape(-1)]
