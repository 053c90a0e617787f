"""Which rows a model trained on: the split record kept with teachers and students.

A split is fixed by the dataset (its plugin name and parameters) and
``dataset.split_seed``. :func:`split_record` describes it as plain values (kept in a
teacher checkpoint's ``meta`` and, as JSON, in a registered student's
``kdforge.split`` tag); when the training split is small enough it also holds a
64-bit hash of every training row's inputs, so another split of the same data can be
checked row by row (:func:`count_seen`), whatever seed or fractions made it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from kdforge.batching import iter_batches
from kdforge.data import DataSplits, Inputs

__all__ = [
    "MAX_HASHED_ROWS",
    "count_seen",
    "ref_record",
    "row_hashes",
    "same_split",
    "split_record",
    "split_tag",
]

#: Training splits up to this many rows get row hashes (8 bytes a row).
MAX_HASHED_ROWS = 1_000_000


def row_hashes(x: Inputs, batch_size: int = 4096) -> np.ndarray:
    """A 64-bit hash of each row's inputs (its bytes), in row order."""
    out: list[int] = []
    for _, batch in iter_batches(x, batch_size):
        flat = batch.detach().cpu().contiguous()
        rows = flat.reshape(len(flat), -1).numpy()
        for row in rows:
            digest = hashlib.blake2b(row.tobytes(), digest_size=8).digest()
            out.append(int.from_bytes(digest, "little", signed=True))
    return np.asarray(out, dtype=np.int64)


def count_seen(x: Inputs, seen: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per row of ``x``: True where its hash is among ``seen`` (sorted or not)."""
    known = np.asarray(seen.numpy() if isinstance(seen, torch.Tensor) else seen, dtype=np.int64)
    return np.isin(row_hashes(x), known)


def split_record(dataset: Any, splits: DataSplits, *, hash_rows: bool = True) -> dict[str, Any]:
    """The split record of ``splits``, made from ``dataset`` (a :class:`DatasetRef`).

    Returns:
        ``{"dataset", "params", "split_seed", "rows": {split: n}}`` and, for a
        training split of at most :data:`MAX_HASHED_ROWS` rows, ``train_hashes`` (an
        int64 tensor) and ``self_seen`` (val/test rows whose inputs also occur in
        train: duplicates in the data, which any split of it keeps).
    """
    record = ref_record(dataset)
    record["rows"] = {name: len(split) for name, split in splits.named_splits().items()}
    if hash_rows and len(splits.train) <= MAX_HASHED_ROWS:
        train = np.unique(row_hashes(splits.train.x))
        record["train_hashes"] = torch.from_numpy(train)
        record["self_seen"] = {
            name: int(count_seen(getattr(splits, name).x, train).sum()) for name in ("val", "test")
        }
    return record


def ref_record(dataset: Any) -> dict[str, Any]:
    """The record of the split ``dataset`` (a :class:`DatasetRef`) makes, without rows."""
    return {
        "dataset": dataset.name,
        "params": json.loads(json.dumps(dict(dataset.params), sort_keys=True, default=str)),
        "split_seed": int(dataset.split_seed),
    }


def same_split(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records name the same dataset, parameters and split seed."""
    keys = ("dataset", "params", "split_seed")
    return all(a.get(k) == b.get(k) for k in keys)


def split_tag(record: dict[str, Any]) -> str:
    """The record without row hashes, as JSON (a model-version tag)."""
    keys = ("dataset", "params", "split_seed")
    return json.dumps({k: record[k] for k in keys if k in record}, sort_keys=True)
