"""Token blocks for language modeling: packing, padding, next-token and masked targets.

Pure array functions (numpy, int64) used by the ``text_corpus`` dataset. Targets follow
the ``language_modeling`` task: the token to predict, or ``-2``
(:data:`~kdforge.data.NOT_A_WORD`) where nothing is scored (padding, the last position
of a causal block, the unmasked positions of a masked block).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdforge.data import NOT_A_WORD

__all__ = ["causal_targets", "mask_tokens", "pack_blocks", "pad_documents", "split_blocks"]


def pack_blocks(
    documents: Sequence[Sequence[int]],
    *,
    block_size: int,
    separator: int,
    wrap: tuple[int, int] | None = None,
) -> np.ndarray:
    """Join the documents with ``separator`` and cut the stream into full blocks.

    Args:
        documents: Token ids of each document.
        block_size: Tokens per block.
        separator: Id put after every document (EOS for causal, SEP for masked models).
        wrap: ``(cls, sep)``: every block starts with ``cls`` and ends with ``sep``
            (BERT's input form), holding ``block_size - 2`` corpus tokens.

    Returns:
        ``(n, block_size)`` int64; the last, incomplete piece of the stream is dropped.
    """
    stream = np.fromiter(
        (token for doc in documents for token in (*doc, separator)), dtype=np.int64
    )
    inner = block_size - (2 if wrap else 0)
    rows = len(stream) // inner
    blocks = stream[: rows * inner].reshape(rows, inner)
    if wrap:
        cls, sep = wrap
        blocks = np.concatenate(
            [np.full((rows, 1), cls, np.int64), blocks, np.full((rows, 1), sep, np.int64)], axis=1
        )
    return np.ascontiguousarray(blocks)


def pad_documents(
    documents: Sequence[Sequence[int]],
    *,
    block_size: int,
    pad: int,
    end: int | None = None,
    wrap: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One block per document: truncated to ``block_size``, padded with ``pad``.

    Args:
        documents: Token ids of each document.
        block_size: Tokens per block.
        pad: The padding id.
        end: Id appended to each document before truncation (EOS of a causal model).
        wrap: ``(cls, sep)`` around each document (BERT), kept when truncated.

    Returns:
        ``(ids, real)``: ``(n, block_size)`` int64 ids and a bool mask of the
        non-padding positions.
    """
    ids = np.full((len(documents), block_size), pad, dtype=np.int64)
    real = np.zeros((len(documents), block_size), dtype=bool)
    for row, doc in enumerate(documents):
        if wrap:
            tokens = [wrap[0], *list(doc)[: block_size - 2], wrap[1]]
        else:
            tokens = [*doc, *([end] if end is not None else [])][:block_size]
        ids[row, : len(tokens)] = tokens
        real[row, : len(tokens)] = True
    return ids, real


def causal_targets(ids: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Next-token targets: ``target[t] = ids[t + 1]`` where that token is real, else -2
    (padding and the last position)."""
    targets = np.full(ids.shape, NOT_A_WORD, dtype=np.int64)
    targets[:, :-1] = np.where(real[:, 1:] & real[:, :-1], ids[:, 1:], NOT_A_WORD)
    return targets


def mask_tokens(
    ids: np.ndarray,
    real: np.ndarray,
    *,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    probability: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking, drawn once: the masked inputs and their targets.

    ``probability`` of the real, non-special positions are chosen (at least one per
    row that has any, so every row is scored); of those 80% become ``mask_id``, 10% a
    random non-special token and 10% stay. Targets hold the original token at the
    chosen positions and -2 elsewhere.

    Returns:
        ``(inputs, targets)``, both ``ids.shape`` int64.
    """
    candidates = real & ~np.isin(ids, np.asarray(list(special_ids), dtype=np.int64))
    chosen = candidates & (rng.random(ids.shape) < probability)
    # A row with no chosen position would have no target; choose one of its candidates.
    for row in np.flatnonzero(candidates.any(axis=1) & ~chosen.any(axis=1)):
        chosen[row, rng.choice(np.flatnonzero(candidates[row]))] = True
    roll = rng.random(ids.shape)
    ordinary = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(special_ids))
    random_tokens = rng.choice(ordinary, size=ids.shape) if len(ordinary) else ids
    inputs = ids.copy()
    inputs[chosen & (roll < 0.8)] = mask_id
    swapped = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swapped] = random_tokens[swapped]
    targets = np.where(chosen, ids, NOT_A_WORD).astype(np.int64)
    return inputs, targets


def split_blocks(
    count: int, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/val/test block numbers (each sorted, at least one block each).

    Raises:
        ValueError: fewer than three blocks.
    """
    if count < 3:
        raise ValueError(f"{count} block(s) cannot make train, val and test splits")
    order = rng.permutation(count)
    n_val = max(1, round(count * val_fraction))
    n_test = max(1, round(count * test_fraction))
    n_val, n_test = min(n_val, count - 2), min(n_test, count - 1 - min(n_val, count - 2))
    val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
    return np.sort(train), np.sort(val), np.sort(test)
