"""How a split's inputs reach the model: in-memory indexing, or streaming from disk.

Two paths draw the same batches in the same order for the same seed, so they train
identical models:

* **in memory**: inputs are one tensor, batched by indexing it with a seeded
  permutation (no DataLoader, no per-row collation; ``benchmarks/datasets_streaming.py``
  compares the two paths);
* **streaming**: inputs are :class:`~kdforge.data.LazyInputs` (files read on demand),
  fed by a ``torch`` DataLoader whose worker processes read and decode the rows of
  each batch in parallel.

Dataset plugins call :func:`apply_storage` at the end of ``load``: it estimates the
bytes of all splits as tensors and holds them in memory under a limit (automatic, or
``memory_limit_mb``) or streams them above it; ``storage: memory`` or
``storage: stream`` overrides the choice. Labels and the teacher's train logits stay
in memory in both cases (they are small: a few bytes per class per row).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch
from typing_extensions import TypeIs

from kdforge.data import DataSplits, Inputs, LazyInputs, Split
from kdforge.errors import ConfigError, DataError

__all__ = [
    "STORAGE_MODES",
    "ConcatInputs",
    "SubsetInputs",
    "TensorInputs",
    "apply_storage",
    "choose_storage",
    "concat",
    "default_memory_limit_bytes",
    "estimate_bytes",
    "has_augmentation",
    "is_lazy",
    "iter_batches",
    "materialize",
    "take",
    "to_device",
]

logger = logging.getLogger("kdforge.data")

_PARALLEL_READ_BYTES = 64 * 2**20

#: Values of a dataset's ``storage`` parameter.
STORAGE_MODES = ("auto", "memory", "stream")
Storage = Literal["auto", "memory", "stream"]


def is_lazy(x: Inputs) -> TypeIs[LazyInputs]:
    """True when ``x`` is read on demand (streamed) rather than an in-memory tensor."""
    return isinstance(x, LazyInputs)


def has_augmentation(x: Inputs) -> bool:
    """True when the training loop gets randomly augmented batches from ``x``."""
    return is_lazy(x) and x.augments


class TensorInputs(LazyInputs):
    """An in-memory tensor behind the :class:`LazyInputs` interface.

    Used to force the streaming path on in-memory data (``storage: stream``) and to
    apply a random augmentation to in-memory training data.
    """

    def __init__(
        self,
        tensor: torch.Tensor,
        *,
        augmentation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        num_workers: int = 0,
    ) -> None:
        self.tensor = tensor
        self.augmentation = augmentation
        self.num_workers = num_workers

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one row."""
        return tuple(self.tensor.shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the tensor."""
        return self.tensor.dtype

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Rows by indexing the tensor."""
        return self.tensor[torch.as_tensor(indices, dtype=torch.long)]

    def fingerprint(self) -> str:
        """Hash of the tensor's shape, dtype and bytes."""
        return _tensor_digest(self.tensor)


class SubsetInputs(LazyInputs):
    """Some rows of other lazy inputs (e.g. the labeled rows only)."""

    def __init__(self, base: LazyInputs, rows: np.ndarray) -> None:
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)
        self.num_workers = base.num_workers
        self.augmentation = None

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one row."""
        return self.base.example_shape

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the base inputs."""
        return self.base.dtype

    @property
    def augments(self) -> bool:
        """Whether the base inputs augment."""
        return self.base.augments

    def __len__(self) -> int:
        return len(self.rows)

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Rows of the base inputs."""
        return self.base.read_rows(self.rows[np.asarray(indices, dtype=np.int64)].tolist())

    def read_batch(self, indices: Sequence[int], *, augment: bool = False) -> torch.Tensor:
        """Rows of the base inputs, augmented as the base would."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)].tolist()
        return self.base.read_batch(rows, augment=augment)

    def fingerprint(self) -> str:
        """Base fingerprint plus a hash of the selected rows."""
        digest = hashlib.sha256(self.base.fingerprint().encode())
        digest.update(self.rows.tobytes())
        return digest.hexdigest()[:16]


class ConcatInputs(LazyInputs):
    """Several inputs one after the other (train rows, then transfer rows)."""

    def __init__(self, parts: Sequence[Inputs]) -> None:
        self.parts = [p if is_lazy(p) else TensorInputs(p) for p in parts]
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])
        self.num_workers = max((p.num_workers for p in self.parts), default=0)
        self.augmentation = None
        shapes = {p.example_shape for p in self.parts}
        if len(shapes) > 1:
            raise DataError(f"cannot concatenate inputs of row shapes {sorted(shapes)}")

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one row."""
        return self.parts[0].example_shape

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the first part."""
        return self.parts[0].dtype

    @property
    def augments(self) -> bool:
        """Whether any part augments."""
        return any(p.augments for p in self.parts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Rows gathered from the parts, in the order asked."""
        return self.read_batch(indices, augment=False)

    def read_batch(self, indices: Sequence[int], *, augment: bool = False) -> torch.Tensor:
        """Rows gathered from the parts (each augmented as that part would)."""
        idx = np.asarray(indices, dtype=np.int64)
        part_of = np.searchsorted(self.offsets, idx, side="right") - 1
        out = torch.empty((len(idx), *self.example_shape), dtype=self.dtype)
        for number in np.unique(part_of):
            where = np.flatnonzero(part_of == number)
            local = (idx[where] - self.offsets[number]).tolist()
            rows = self.parts[number].read_batch(local, augment=augment)
            out[torch.from_numpy(where)] = rows.to(self.dtype)
        return out

    def fingerprint(self) -> str:
        """Hash of the parts' fingerprints."""
        digest = hashlib.sha256()
        for part in self.parts:
            digest.update(part.fingerprint().encode())
        return digest.hexdigest()[:16]


def take(x: Inputs, rows: torch.Tensor | np.ndarray) -> Inputs:
    """Rows of ``x`` (an index array or a boolean mask), without reading lazy inputs."""
    if not is_lazy(x):
        return x[rows]
    array = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    picked = np.flatnonzero(array) if array.dtype == bool else array.astype(np.int64)
    return SubsetInputs(x, picked)


def concat(parts: Sequence[Inputs]) -> Inputs:
    """Rows of ``parts`` one after the other; lazy if any part is lazy."""
    if any(is_lazy(p) for p in parts):
        return ConcatInputs(parts)
    tensors = [p for p in parts if isinstance(p, torch.Tensor)]
    return torch.cat(tensors)


def to_device(x: Inputs, device: torch.device | str) -> Inputs:
    """Move in-memory inputs to ``device``; lazy inputs move batch by batch."""
    return x if is_lazy(x) else x.to(device)


def iter_batches(
    x: Inputs,
    batch_size: int,
    order: torch.Tensor | None = None,
    *,
    augment: bool = False,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(row indices, inputs)`` per batch, in ``order`` (default: row order).

    In-memory tensors are indexed directly. Lazy inputs are read in-process when they
    have no workers, else through a DataLoader with ``x.num_workers`` workers that
    reads exactly the same batches. Indices come back on ``order``'s device.

    Args:
        x: The inputs.
        batch_size: Rows per batch (the last batch may be smaller).
        order: The rows to read, in order: a permutation (e.g. seeded
            ``torch.randperm``) or a subset of one (a data-parallel worker's share);
            None reads every row in row order.
        augment: Ask lazy inputs for their random training augmentation.
        seed: Seeds the DataLoader workers (their augmentation randomness), so the
            same seed gives the same batches; the global RNG is left untouched.
    """
    n = len(x) if order is None else len(order)
    if order is None and not is_lazy(x):
        for start in range(0, n, batch_size):  # row order: slices are views, no copy
            rows = torch.arange(start, min(start + batch_size, n), device=x.device)
            yield rows, x[start : start + batch_size]
        return
    if order is None:
        order = torch.arange(n)
    if not is_lazy(x):
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield idx, x[idx]
        return
    cpu_order = order.cpu()
    batches = [cpu_order[s : s + batch_size].tolist() for s in range(0, n, batch_size)]
    if x.num_workers <= 0 or len(batches) <= 1:
        for batch_rows in batches:
            yield (
                torch.as_tensor(batch_rows).to(order.device),
                x.read_batch(batch_rows, augment=augment),
            )
        return
    loader = torch.utils.data.DataLoader(
        _RowsDataset(x, augment),
        batch_sampler=batches,
        num_workers=min(x.num_workers, len(batches)),
        collate_fn=_identity,
        # Page-locked host memory makes the copies to a GPU asynchronous and faster.
        pin_memory=order.device.type == "cuda",
        # A private generator: the DataLoader draws its worker seed from it, and must
        # not consume the global RNG (the in-memory path does not, and dropout uses it).
        generator=torch.Generator().manual_seed(seed),
    )
    for idx, batch in loader:
        yield idx.to(order.device), batch


class _RowsDataset(torch.utils.data.Dataset):
    """Map-style dataset reading whole batches at once (``__getitems__``)."""

    def __init__(self, inputs: LazyInputs, augment: bool) -> None:
        self.inputs = inputs
        self.augment = augment

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.inputs.read_batch([index], augment=self.augment)[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.inputs.read_batch(indices, augment=self.augment)
        return torch.as_tensor(indices, dtype=torch.long), batch


def _identity(batch: Any) -> Any:
    # The dataset's __getitems__ already returns the (indices, batch) pair.
    return batch


def materialize(x: Inputs, batch_size: int = 256) -> torch.Tensor:
    """All rows of ``x`` as one tensor (lazy inputs are read with their workers)."""
    if not is_lazy(x):
        return x
    if isinstance(x, TensorInputs):
        return x.tensor
    out = torch.empty(x.shape, dtype=x.dtype)
    for idx, batch in iter_batches(x, batch_size):
        out[idx] = batch
    return out


def default_memory_limit_bytes() -> int:
    """The automatic in-memory limit: an eighth of the machine's physical memory.

    In-memory inputs exist in the search driver, in Ray's object store and in each
    concurrent trial, so a dataset held in memory should stay a small share of RAM.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = 8 * 2**30
    return int(total) // 8


def estimate_bytes(splits: DataSplits) -> int:
    """Bytes the inputs and labels of every split take as in-memory tensors."""
    total = 0
    for split in splits.named_splits().values():
        for x in (split.x, split.teacher_x):
            if x is not None:
                total += x.nbytes() if is_lazy(x) else x.element_size() * x.nelement()
        total += split.y.element_size() * split.y.nelement()
    return total


def choose_storage(
    nbytes: int, storage: str = "auto", memory_limit_bytes: int | None = None
) -> Literal["memory", "stream"]:
    """``"memory"`` or ``"stream"`` for data of ``nbytes`` under ``storage``.

    Args:
        nbytes: Estimated size of the data as tensors.
        storage: ``"auto"`` (decide by size), ``"memory"`` or ``"stream"`` (forced).
        memory_limit_bytes: The limit for ``"auto"`` (default: automatic).
    """
    if storage == "memory":
        return "memory"
    if storage == "stream":
        return "stream"
    if storage != "auto":
        raise ConfigError(
            f"storage: unknown mode {storage!r}", hint=f"use one of {', '.join(STORAGE_MODES)}"
        )
    limit = default_memory_limit_bytes() if memory_limit_bytes is None else memory_limit_bytes
    return "memory" if nbytes <= limit else "stream"


def apply_storage(
    splits: DataSplits,
    *,
    storage: str = "auto",
    memory_limit_mb: float | None = None,
    num_workers: int = 2,
) -> DataSplits:
    """Hold every split in memory or stream it, as :func:`choose_storage` decides.

    In memory, lazy inputs are read once into tensors (with ``num_workers`` workers;
    a split with a random augmentation keeps it, applied in-process to its tensor).
    Streaming, tensors are wrapped so they too go through the DataLoader path.

    Args:
        splits: Splits whose inputs are tensors or lazy inputs.
        storage: ``"auto"``, ``"memory"`` or ``"stream"``.
        memory_limit_mb: In-memory limit for ``"auto"`` (default: an eighth of RAM).
        num_workers: DataLoader workers per streamed split (0: read in-process).
    """
    nbytes = estimate_bytes(splits)
    limit = None if memory_limit_mb is None else int(memory_limit_mb * 2**20)
    mode = choose_storage(nbytes, storage, limit)
    converted: dict[str, Split] = {}

    def stored(x: Inputs) -> Inputs:
        new_x: Inputs
        if mode == "memory":
            if is_lazy(x):
                # Worker processes cost more to start than small data takes to read.
                x.num_workers = num_workers if x.nbytes() > _PARALLEL_READ_BYTES else 0
                tensor = materialize(x)
                new_x = TensorInputs(tensor, augmentation=x.augmentation) if x.augments else tensor
            else:
                new_x = x
        else:
            new_x = x if is_lazy(x) else TensorInputs(x)
            new_x.num_workers = num_workers
        return new_x

    for name, split in splits.named_splits().items():
        teacher_x = None if split.teacher_x is None else stored(split.teacher_x)
        converted[name] = Split(stored(split.x), split.y, teacher_x)
    logger.info(
        "dataset %s: %.1f MB as tensors -> %s%s",
        splits.info.name,
        nbytes / 2**20,
        "held in memory" if mode == "memory" else "streamed from disk",
        f" with {num_workers} DataLoader workers" if mode == "stream" else "",
    )
    return replace(
        splits,
        train=converted["train"],
        val=converted["val"],
        test=converted["test"],
        transfer=converted.get("transfer"),
        _fingerprint=None,
    )


def _tensor_digest(tensor: torch.Tensor) -> str:
    contiguous = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(str((tuple(contiguous.shape), contiguous.dtype)).encode())
    digest.update(contiguous.numpy().tobytes())
    return digest.hexdigest()[:16]
