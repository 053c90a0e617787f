"""Teacher outputs stored as ``.npy`` files and read back memory-mapped, row by row.

:class:`CachedRows` is what trials index instead of an in-memory tensor of teacher
logits or features: it pickles as a folder path (a few hundred bytes through Ray),
opens the files with ``np.load(mmap_mode="r")`` in each process, and decodes only the
rows of each batch to dense float32. Every trial on a machine therefore shares the
operating system's page cache instead of holding its own copy.

Three encodings:

* ``dense``: one ``(n, *shape)`` array, float32, float16 or bfloat16;
* ``topk``: for ``(n, classes)`` logits, per row the ``k`` largest logits (``values``,
  ``indices``) and one ``rest`` logit given to every other class, chosen so that the
  softmax (T=1) keeps the top-k probabilities exactly and spreads the remaining mass
  evenly; decoded to dense rows;
* ``topk_lse``: for per-position logits ``(n, T, V)`` (language models), per position
  the ``k`` largest logits (``values`` ``(n, T, k)`` in the storage dtype, ``indices``
  int32) and the log-sum-exp over the whole vocabulary (``lse`` ``(n, T)`` float32),
  so the kept probabilities ``exp(values - lse)`` are exact. Rows come back as
  :class:`~kdforge.data.TopKLogits`, never densified: ``k x (2 or 4 + 4)`` bytes per
  position instead of ``V x (2 or 4)``.

numpy has no bfloat16: bfloat16 arrays are stored as ``uint16`` files holding the
bfloat16 bit patterns (the spec says ``"dtype": "bfloat16"``) and reinterpreted on read.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdforge.data import TopKLogits

__all__ = [
    "CachedRows",
    "decode_topk",
    "encode_topk",
    "from_stored",
    "save_rows",
    "to_stored",
    "topk_lse_bytes_per_position",
]

#: Bytes per stored element, by ``teacher_cache.dtype``.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def to_stored(tensor: torch.Tensor, dtype: str) -> np.ndarray:
    """``tensor`` as the numpy array written for ``dtype`` (bfloat16: uint16 bit patterns)."""
    if dtype == "bfloat16":
        bits = tensor.detach().cpu().to(torch.bfloat16).contiguous().view(torch.int16)
        return bits.numpy().view(np.uint16)
    store = np.float16 if dtype == "float16" else np.float32
    return tensor.detach().cpu().float().numpy().astype(store)


def from_stored(array: np.ndarray, dtype: str) -> torch.Tensor:
    """A float32 tensor from a stored array (copies: it may be a read-only memory map)."""
    if dtype == "bfloat16":
        bits = torch.from_numpy(np.array(array, dtype=np.uint16).view(np.int16))
        return bits.view(torch.bfloat16).float()
    return torch.from_numpy(np.array(array, dtype=np.float32))


def topk_lse_bytes_per_position(k: int, dtype: str) -> int:
    """Disk bytes of one position in the ``topk_lse`` encoding: values, indices, lse."""
    return k * (DTYPE_BYTES[dtype] + 4) + 4


def encode_topk(logits: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    """Top-``k`` values and indices of each row, plus the ``rest`` logit of the others.

    ``rest = logsumexp(other logits) - log(classes - k)``: giving it to every other
    class keeps the total probability of the non-top-k classes.
    """
    logits = logits.float()
    classes = logits.shape[1]
    values, indices = torch.topk(logits, k, dim=1)
    others = logits.scatter(1, indices, float("-inf"))
    rest = torch.logsumexp(others, dim=1) - math.log(classes - k)
    return {
        "values": values.numpy(),
        "indices": indices.to(torch.int32).numpy(),
        "rest": rest.numpy().astype(np.float32),
    }


def decode_topk(
    values: np.ndarray, indices: np.ndarray, rest: np.ndarray, classes: int
) -> torch.Tensor:
    """Dense float32 logits ``(n, classes)`` from a top-k encoding."""
    # np.array copies: the inputs may be read-only views of memory-mapped files.
    dense = torch.from_numpy(np.array(rest, dtype=np.float32)).unsqueeze(1).repeat(1, classes)
    dense.scatter_(
        1,
        torch.from_numpy(np.array(indices, dtype=np.int64)),
        torch.from_numpy(np.array(values, dtype=np.float32)),
    )
    return dense


def save_rows(
    folder: Path,
    stem: str,
    tensor: torch.Tensor | TopKLogits,
    *,
    dtype: str = "float32",
    top_k: int | None = None,
) -> dict[str, Any]:
    """Write ``tensor`` as ``<stem>*.npy`` files in ``folder``; return how to read it back.

    Args:
        folder: Target folder (exists).
        stem: File name stem (e.g. ``logits_train``).
        tensor: ``(n, ...)`` values, or per-position logits already in the top-k form.
        dtype: ``float32``, ``float16`` or ``bfloat16`` storage.
        top_k: For ``(n, classes)`` logits: keep the k largest per row (ignored when
            ``k >= classes``). For ``(n, T, V)`` logits: the ``topk_lse`` encoding (k
            capped at V). Refused (ValueError) for outputs of more dimensions.

    Returns:
        A JSON-able spec for :meth:`CachedRows.from_spec`.
    """
    if isinstance(tensor, TopKLogits):  # encoded (with this top_k) while the teacher ran
        top: TopKLogits | None = tensor.to("cpu")
        shape = [int(s) for s in tensor.shape]
    else:
        tensor = tensor.detach().float().cpu()
        shape = [int(s) for s in tensor.shape]
        # Per-position logits (n, T, V): the k largest per position plus the lse, kept
        # sparse (k = V too, so that every loss reads one form for one config).
        dense_3d = top_k is not None and tensor.dim() == 3
        top = TopKLogits.from_logits(tensor, top_k) if dense_3d and top_k else None
    if top is not None:
        np.save(folder / f"{stem}.values.npy", to_stored(top.values, dtype))
        np.save(folder / f"{stem}.indices.npy", top.indices.to(torch.int32).numpy())
        np.save(folder / f"{stem}.lse.npy", top.lse.numpy().astype(np.float32))
        return {"stem": stem, "encoding": "topk_lse", "shape": shape, "k": top.k, "dtype": dtype}
    assert isinstance(tensor, torch.Tensor)
    if top_k is not None and tensor.dim() > 3:
        raise ValueError(
            f"{stem}: top_k encodes (rows, classes) or (rows, positions, classes) logits, "
            f"not shape {tuple(tensor.shape)}"
        )
    if top_k is not None and tensor.dim() == 2 and top_k < tensor.shape[1]:
        parts = encode_topk(tensor, top_k)
        values = to_stored(torch.from_numpy(parts["values"]), dtype)
        np.save(folder / f"{stem}.values.npy", values)
        np.save(folder / f"{stem}.indices.npy", parts["indices"])
        np.save(folder / f"{stem}.rest.npy", parts["rest"])
        return {"stem": stem, "encoding": "topk", "shape": shape, "k": top_k, "dtype": dtype}
    np.save(folder / f"{stem}.npy", to_stored(tensor, dtype))
    return {"stem": stem, "encoding": "dense", "shape": shape, "dtype": dtype}


class CachedRows:
    """Rows of a cached array, decoded to float32 on demand from memory-mapped files.

    Supports what the trainer does with teacher outputs: ``len``, ``shape``,
    ``rows[idx]`` (an index tensor/array/slice), ``.to(device)`` and ``.float()``.
    """

    def __init__(self, folder: str | Path, spec: dict[str, Any]) -> None:
        self.folder = str(folder)
        self.spec = dict(spec)
        self.device = torch.device("cpu")
        self._arrays: dict[str, np.ndarray] | None = None

    @classmethod
    def from_spec(cls, folder: str | Path, spec: dict[str, Any]) -> CachedRows:
        """Rows written by :func:`save_rows` with this spec."""
        return cls(folder, spec)

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            stem = Path(self.folder) / self.spec["stem"]
            if self.spec["encoding"] in ("topk", "topk_lse"):
                last = "rest" if self.spec["encoding"] == "topk" else "lse"
                names = ("values", "indices", last)
                self._arrays = {n: np.load(f"{stem}.{n}.npy", mmap_mode="r") for n in names}
            else:
                self._arrays = {"dense": np.load(f"{stem}.npy", mmap_mode="r")}
        return self._arrays

    @property
    def shape(self) -> torch.Size:
        """Shape of the decoded array."""
        return torch.Size(self.spec["shape"])

    def __len__(self) -> int:
        return int(self.spec["shape"][0])

    def dim(self) -> int:
        """Number of dimensions of the decoded array."""
        return len(self.spec["shape"])

    @property
    def sparse(self) -> bool:
        """True when rows come back as :class:`~kdforge.data.TopKLogits` (``topk_lse``)."""
        return bool(self.spec["encoding"] == "topk_lse")

    def __getitem__(self, key: Any) -> Any:
        """Decoded float32 rows (on :attr:`device`); for the ``topk_lse`` encoding a
        :class:`~kdforge.data.TopKLogits` (float32 values, int64 indices)."""
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        arrays = self._open()
        dtype = str(self.spec.get("dtype", "float32"))
        if self.sparse:
            top = TopKLogits(
                from_stored(arrays["values"][key], dtype),
                torch.from_numpy(np.array(arrays["indices"][key], dtype=np.int64)),
                torch.from_numpy(np.array(arrays["lse"][key], dtype=np.float32)),
                int(self.spec["shape"][-1]),
            )
            return top.to(self.device) if self.device.type != "cpu" else top
        if self.spec["encoding"] == "topk":
            rows = decode_topk(
                from_stored(arrays["values"][key], dtype).numpy(),
                arrays["indices"][key],
                arrays["rest"][key],
                int(self.spec["shape"][1]),
            )
        else:
            rows = from_stored(arrays["dense"][key], dtype)
        return rows.to(self.device) if self.device.type != "cpu" else rows

    def materialize(self) -> Any:
        """Every row in memory (a copy): one dense float32 tensor, or one
        :class:`~kdforge.data.TopKLogits` for the ``topk_lse`` encoding."""
        return self[slice(None)]

    def dense(self) -> torch.Tensor:
        """Every row as dense float32 logits, also for ``topk_lse`` (for metrics; see
        :meth:`kdforge.data.TopKLogits.dense`)."""
        rows = self.materialize()
        return rows.dense() if isinstance(rows, TopKLogits) else rows

    def to(self, device: Any) -> CachedRows:
        """These rows, decoded onto ``device`` when indexed (no copy now)."""
        target = torch.device(device)
        if target == self.device:
            return self
        moved = CachedRows(self.folder, self.spec)
        moved.device = target
        return moved

    def float(self) -> CachedRows:
        """Itself: rows are always decoded as float32."""
        return self

    def __getstate__(self) -> dict[str, Any]:
        # Only the path travels (to Ray trials); each process maps the files itself.
        return {"folder": self.folder, "spec": self.spec, "device": str(self.device)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.folder = state["folder"]
        self.spec = state["spec"]
        self.device = torch.device(state["device"])
        self._arrays = None

    def __repr__(self) -> str:
        return f"CachedRows({self.folder!r}, {self.spec['stem']!r}, shape={list(self.shape)})"
