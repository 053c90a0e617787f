"""Data containers shared by dataset plugins, teachers, the trainer and export.

A dataset plugin returns a :class:`DataSplits`: in-memory tensors for the train,
validation and test splits (and an optional unlabeled ``transfer`` split), plus a
:class:`DataInfo` describing the per-example input shape and the number of classes.
Labels use ``-1`` for "no label" so that a batch can mix labeled and unlabeled rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

__all__ = ["UNLABELED", "DataInfo", "DataSplits", "Split"]

#: Label value meaning "this example has no label" (e.g. rows of a transfer split).
UNLABELED = -1


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about the data.

    Attributes:
        name: Dataset name, for reports.
        input_shape: Shape of one example, without the batch axis (e.g. ``(1, 8, 8)``).
        num_classes: Number of classes of the classification task.
        input_dtype: ``torch`` dtype name of the inputs.
        class_names: Optional human-readable class names.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    input_dtype: str = "float32"
    class_names: tuple[str, ...] | None = None


@dataclass
class Split:
    """One split of a dataset held in memory.

    Attributes:
        x: Inputs, shape ``(n, *input_shape)``.
        y: Integer labels, shape ``(n,)``; ``-1`` marks an unlabeled example.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DataSplits:
    """A dataset split for distillation.

    Attributes:
        info: Shapes and classes.
        train: Training split (labels may contain ``-1``).
        val: Validation split used for model selection and early stopping.
        test: Held-out test split, used only for final reporting.
        transfer: Optional unlabeled inputs on which only the teacher's soft targets
            are available.
    """

    info: DataInfo
    train: Split
    val: Split
    test: Split
    transfer: Split | None = None
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def named_splits(self) -> dict[str, Split]:
        """Return the present splits by name (``train``, ``val``, ``test``, ``transfer``)."""
        out = {"train": self.train, "val": self.val, "test": self.test}
        if self.transfer is not None:
            out["transfer"] = self.transfer
        return out

    def fingerprint(self) -> str:
        """A content hash of every split's inputs and labels (stable across runs)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, split in self.named_splits().items():
                digest.update(name.encode())
                for tensor in (split.x, split.y):
                    contiguous = tensor.detach().cpu().contiguous()
                    digest.update(str(tuple(contiguous.shape)).encode())
                    digest.update(str(contiguous.dtype).encode())
                    digest.update(contiguous.numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint
