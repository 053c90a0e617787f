"""Teacher outputs stored as ``.npy`` files and read back memory-mapped, row by row.

:class:`CachedRows` is what trials index instead of an in-memory tensor of teacher
logits or features: it pickles as a folder path (a few hundred bytes through Ray),
opens the files with ``np.load(mmap_mode="r")`` in each process, and decodes only the
rows of each batch to dense float32. Every trial on a machine therefore shares the
operating system's page cache instead of holding its own copy.

Two encodings:

* ``dense``: one ``(n, *shape)`` array, float32 or float16;
* ``topk``: per row the ``k`` largest logits (``values``, ``indices``) and one
  ``rest`` logit given to every other class, chosen so that the softmax (T=1) keeps
  the top-k probabilities exactly and spreads the remaining mass evenly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CachedRows", "decode_topk", "encode_topk", "save_rows"]


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
    tensor: torch.Tensor,
    *,
    dtype: str = "float32",
    top_k: int | None = None,
) -> dict[str, Any]:
    """Write ``tensor`` as ``<stem>*.npy`` files in ``folder``; return how to read it back.

    Args:
        folder: Target folder (exists).
        stem: File name stem (e.g. ``logits_train``).
        tensor: ``(n, ...)`` values.
        dtype: ``float32`` or ``float16`` storage.
        top_k: For ``(n, classes)`` logits: keep the k largest per row (ignored when
            ``k >= classes``). Refused (ValueError) for outputs of more dimensions.

    Returns:
        A JSON-able spec for :meth:`CachedRows.from_spec`.
    """
    tensor = tensor.detach().float().cpu()
    if top_k is not None and tensor.dim() > 2:
        # Per-position logits (n, seq_len, classes): a top-k per position is not written.
        raise ValueError(
            f"{stem}: top_k encodes (rows, classes) logits, not shape {tuple(tensor.shape)}; "
            "per-position outputs are stored dense"
        )
    store = np.float16 if dtype == "float16" else np.float32
    shape = [int(s) for s in tensor.shape]
    if top_k is not None and tensor.dim() == 2 and top_k < tensor.shape[1]:
        parts = encode_topk(tensor, top_k)
        np.save(folder / f"{stem}.values.npy", parts["values"].astype(store))
        np.save(folder / f"{stem}.indices.npy", parts["indices"])
        np.save(folder / f"{stem}.rest.npy", parts["rest"])
        return {"stem": stem, "encoding": "topk", "shape": shape, "k": top_k}
    np.save(folder / f"{stem}.npy", tensor.numpy().astype(store))
    return {"stem": stem, "encoding": "dense", "shape": shape}


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
            if self.spec["encoding"] == "topk":
                names = ("values", "indices", "rest")
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

    def __getitem__(self, key: Any) -> torch.Tensor:
        """Decoded float32 rows (on :attr:`device`)."""
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        arrays = self._open()
        if self.spec["encoding"] == "topk":
            rows = decode_topk(
                arrays["values"][key],
                arrays["indices"][key],
                arrays["rest"][key],
                int(self.spec["shape"][1]),
            )
        else:
            rows = torch.from_numpy(np.array(arrays["dense"][key], dtype=np.float32))
        return rows.to(self.device) if self.device.type != "cpu" else rows

    def materialize(self) -> torch.Tensor:
        """Every row as one dense float32 tensor (a copy)."""
        return self[slice(None)]

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
