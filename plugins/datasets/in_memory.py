"""Dataset ``in_memory``: data objects held by this Python process (``kdforge.distill``).

:meth:`InMemory.hold` turns what a notebook holds into CPU tensors once, keeps them in
this process under a key (a digest of their content) and returns the key; the config
then reads ``dataset: {name: in_memory, params: {key: ...}}``. Accepted forms:

* ``(x, y)``: tensors, NumPy arrays or lists (labels integers ``0..K-1`` or strings);
* a dict of splits, ``{"train": (x, y), "val": ..., "test": ..., "transfer": x}``
  (``validation`` is read as ``val``; each value in any form here); a Hugging Face
  ``DatasetDict`` is such a dict;
* a ``torch.utils.data.DataLoader`` or map-style ``Dataset`` yielding ``(x, y)`` pairs
  (a map-style dataset is read in index order, whatever the loader's shuffling);
* a Hugging Face ``datasets.Dataset``: the input column is ``input_ids``,
  ``pixel_values``, ``x`` or the only column besides the label column (``label``,
  ``labels`` or ``y``).

Labels are class ids by default; ``task: regression`` (float targets ``(n, R)`` or
``(n,)``) and ``task: multilabel`` (0/1 labels ``(n, L)``) read rows of values, NaN
where unknown, like the ``arrays`` dataset.

Unlabeled transfer data comes the same way, inputs alone (``x``, a loader yielding
inputs, a dataset without label column). Missing val/test splits are carved from
train like the file datasets do (``val_fraction``, ``test_fraction``, stratified).

The trials get the tensors through Ray's object store once per search (inside the
trial payload), so CUDA tensors are refused: the trials may run on other devices or
machines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

import kdforge
from kdforge.data import UNLABELED, DataInfo, DataSplits
from kdforge.errors import ConfigError, DataError
from kdforge.interfaces import DatasetPlugin, PluginParams
from kdforge.plugins.datasets._splits import (
    FileDatasetParams,
    assign_splits,
    encode_labels,
    make_splits,
)
from kdforge.plugins.datasets._targets import (
    TaskName,
    float_targets,
    make_float_splits,
    refuse_rows_for_classification,
    row_codes,
    unstratified,
)

__all__ = ["HeldData", "InMemory", "InMemoryParams"]

_WHERE = "dataset 'in_memory'"
_SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "transfer": "transfer",
    "unlabeled": "transfer",
}
_INPUT_COLUMNS = ("input_ids", "pixel_values", "x", "inputs", "image", "text")
_LABEL_COLUMNS = ("label", "labels", "y")


class InMemoryParams(PluginParams):
    """Parameters of the ``in_memory`` dataset."""

    key: str = Field(description="The key kdforge.distill gave the data it holds.")
    name: str = Field("in_memory", description="Dataset name for reports.")
    val_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="Share of rows for validation when no val split is given."
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="Share of rows for test when no test split is given."
    )
    stratify: bool = Field(True, description="Keep class shares equal across random splits.")
    task: TaskName = Field(
        "classification",
        description="What the labels hold: classification (class ids), regression (float "
        "targets (n, R) or (n,)) or multilabel (0/1 labels (n, L)); NaN = unknown.",
    )
    target_names: list[str] | None = Field(
        None, description="Names of the regression targets or multilabel labels."
    )


@dataclass(frozen=True)
class HeldData:
    """Data in CPU tensors: per source ``(split or "", inputs, labels or None)``."""

    sources: tuple[tuple[str, torch.Tensor, np.ndarray | list[Any] | None], ...]


class InMemory(DatasetPlugin):
    """Data held in this process, given as tensors, arrays, loaders or HF datasets."""

    name = "in_memory"
    Params = InMemoryParams

    #: Key -> data, in the driver process (trials get tensors through the payload).
    held: ClassVar[dict[str, HeldData]] = {}

    @classmethod
    def hold(cls, data: Any, transfer: Any = None) -> str:
        """Convert ``data`` (and unlabeled ``transfer`` data) once; return their key.

        Raises:
            DataError: a form kdforge cannot read, or inputs on a CUDA device.
        """
        sources = _sources(data, "data")
        if transfer is not None:
            x, _ = _pair(transfer, "transfer", labeled=False)
            sources.append(("transfer", x, None))
        held = HeldData(tuple(sources))
        key = f"data-{_digest(held)}"
        cls.held[key] = held
        return key

    @classmethod
    def release(cls, key: str) -> None:
        """Forget the data held under ``key``."""
        cls.held.pop(key, None)

    def load(self, seed: int) -> DataSplits:
        """The held tensors split into train/val/test (and transfer)."""
        params = self.params
        assert isinstance(params, InMemoryParams)
        held = self.held.get(params.key)
        if held is None:
            raise ConfigError(
                f"{_WHERE}: no data is held under key {params.key!r} in this process",
                hint="in-memory data exists only in the Python process that passed it: call "
                "kdforge.distill/kdforge.resume with the data, or save it "
                "(result.to_config() writes an .npz) and use the arrays dataset",
            )
        x = torch.cat([s[1] for s in held.sources]) if len(held.sources) > 1 else held.sources[0][1]
        given = None
        if any(s[0] for s in held.sources):
            given = np.concatenate([np.full(len(s[1]), s[0], dtype=object) for s in held.sources])
            if "train" not in set(given.tolist()) and "" not in set(given.tolist()):
                raise DataError(f"{_WHERE}: splits {sorted(set(given.tolist()))} but no train")
            given[given == ""] = "train"
        split_params = FileDatasetParams(
            val_fraction=params.val_fraction,
            test_fraction=params.test_fraction,
            stratify=params.stratify,
        )
        targets: np.ndarray | None = None
        if params.task == "classification":
            refuse_rows_for_classification(
                [(s[0], None if s[2] is None else np.asarray(s[2])) for s in held.sources], _WHERE
            )
            labels, classes = encode_labels(_all_labels(held), _WHERE)
            rows = assign_splits(labels, given, split_params, seed, _WHERE)
        else:
            targets, classes = float_targets(
                [(s[0], len(s[1]), _float_array(s[2])) for s in held.sources],
                params.task,
                params.target_names,
                _WHERE,
            )
            split_params = unstratified(split_params)
            rows = assign_splits(row_codes(targets), given, split_params, seed, _WHERE)
        is_token = x.dtype == torch.int64
        info = DataInfo(
            name=params.name,
            input_shape=tuple(int(s) for s in x.shape[1:]),
            num_classes=len(classes),
            input_dtype=str(x.dtype).removeprefix("torch."),
            class_names=classes,
            vocab_size=int(x.max()) + 1 if is_token and len(x) else None,
            task=params.task,
        )
        if targets is not None:
            return make_float_splits(
                info, rows, targets, lambda _, picked: x[torch.from_numpy(picked)]
            )
        return make_splits(info, rows, labels, lambda _, picked: x[torch.from_numpy(picked)])


def _sources(data: Any, where: str) -> list[tuple[str, torch.Tensor, Any]]:
    """``(split, inputs, labels)`` per part of ``data`` (split ``""`` when not given)."""
    if isinstance(data, Mapping) and not _is_hf_dataset(data):
        out = []
        for raw_name, part in data.items():
            name = _SPLIT_ALIASES.get(str(raw_name).lower())
            if name is None:
                raise DataError(
                    f"{where}: unknown split {raw_name!r}",
                    hint="name the splits train, val (or validation), test and transfer",
                )
            x, y = _pair(part, f"{where}[{raw_name!r}]", labeled=name != "transfer")
            out.append((name, x, y))
        if not any(name == "train" for name, _, _ in out):
            raise DataError(f"{where}: splits {list(data)} given but no 'train'")
        return out
    x, y = _pair(data, where, labeled=True)
    return [("", x, y)]


def _pair(data: Any, where: str, *, labeled: bool) -> tuple[torch.Tensor, Any]:
    """Inputs (a CPU tensor) and labels (array/list, None when unlabeled) of one part."""
    if _is_hf_dataset(data):
        x, y = _from_hf(data, where)
    elif isinstance(data, torch.utils.data.DataLoader | torch.utils.data.Dataset):
        x, y = _from_loader(data, where)
    elif isinstance(data, tuple | list) and len(data) == 2 and labeled:
        x, y = _tensor(data[0], where), _labels(data[1], where)
    elif isinstance(data, tuple | list) and len(data) == 1:
        x, y = _tensor(data[0], where), None
    else:
        x, y = _tensor(data, where), None
    if labeled and y is None:
        raise DataError(
            f"{where}: inputs without labels",
            hint="pass (x, y), or give unlabeled inputs as transfer data (transfer=x)",
        )
    if y is not None and len(y) != len(x):
        raise DataError(f"{where}: {len(x)} inputs but {len(y)} labels")
    return x, (y if labeled else None)


def _tensor(value: Any, where: str) -> torch.Tensor:
    """A CPU tensor: float32, or int64 for integer inputs (token ids)."""
    if isinstance(value, torch.Tensor):
        if value.is_cuda or value.device.type not in ("cpu",):
            raise DataError(
                f"{where}: the inputs are on {value.device}",
                hint="move them to the CPU first (x.cpu()): the trials receive the data "
                "through Ray's object store and may run on other devices or machines",
            )
        tensor = value.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: cannot turn a {type(value).__name__} into a tensor ({exc})",
                hint="pass tensors, NumPy arrays, (x, y) pairs, a DataLoader or a datasets.Dataset",
            ) from None
    if tensor.dim() == 1:  # one feature per row
        tensor = tensor.unsqueeze(1)
    if tensor.dim() == 0:
        raise DataError(f"{where}: a single value is not a set of rows")
    # Signed integers are token ids; everything else (uint8 pixels too) is float32.
    if tensor.dtype in (torch.int8, torch.int16, torch.int32, torch.int64):
        return tensor.to(torch.int64).contiguous()
    return tensor.to(torch.float32).contiguous()


def _labels(value: Any, where: str) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim not in (1, 2):
        raise DataError(
            f"{where}: labels have shape {array.shape}, expected one label (or one row of "
            "regression targets or 0/1 labels) per example"
        )
    # Rows of values stay arrays (regression/multilabel); 1-D non-integers become a
    # list so that class names and missing labels (None) keep their Python values.
    return array if array.dtype.kind in "iu" or array.ndim == 2 else array.tolist()


def _float_array(labels: Any) -> np.ndarray | None:
    """Held labels as an array for regression/multilabel (None, a missing label: NaN)."""
    if labels is None or isinstance(labels, np.ndarray):
        return labels
    values = [np.nan if v is None else v for v in labels]
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray([str(v) for v in values])  # float_targets says it is no number


def _from_loader(data: Any, where: str) -> tuple[torch.Tensor, Any]:
    """Every ``(x, y)`` (or ``x``) a loader or map-style dataset yields, in index order."""
    loader = data
    dataset = getattr(data, "dataset", data)
    if (
        isinstance(dataset, torch.utils.data.Dataset)
        and hasattr(dataset, "__len__")
        and not (isinstance(dataset, torch.utils.data.IterableDataset))
    ):
        collate = getattr(data, "collate_fn", None)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=256,
            shuffle=False,
            num_workers=0,
            **({"collate_fn": collate} if collate is not None else {}),
        )
    xs: list[torch.Tensor] = []
    ys: list[Any] = []
    for batch in loader:
        if isinstance(batch, Mapping):
            batch = _columns_of(batch, where)
        if isinstance(batch, tuple | list) and len(batch) >= 2:
            xs.append(_tensor(batch[0], where))
            ys.append(_labels(batch[1], where))
        else:
            xs.append(_tensor(batch[0] if isinstance(batch, tuple | list) else batch, where))
    if not xs:
        raise DataError(f"{where}: the loader yielded no batch")
    if ys and len(ys) != len(xs):
        raise DataError(f"{where}: some batches have labels and some do not")
    y: Any = None
    if ys:
        if all(isinstance(v, np.ndarray) for v in ys):
            y = np.concatenate(ys)
        else:
            y = [label for part in ys for label in part]
    return torch.cat(xs), y


def _columns_of(batch: Mapping[str, Any], where: str) -> tuple[Any, ...]:
    names = list(batch)
    label = next((c for c in _LABEL_COLUMNS if c in batch), None)
    inputs = next((c for c in _INPUT_COLUMNS if c in batch), None)
    if inputs is None:
        others = [c for c in names if c != label and c != "attention_mask"]
        if len(others) != 1:
            raise DataError(
                f"{where}: cannot tell the input column among {names}",
                hint=f"name it one of {list(_INPUT_COLUMNS)}",
            )
        inputs = others[0]
    if inputs == "text":
        raise DataError(
            f"{where}: column 'text' holds raw text",
            hint="tokenize it first (input_ids padded to one length), as the teacher expects",
        )
    return (batch[inputs], batch[label]) if label else (batch[inputs],)


def _is_hf_dataset(data: Any) -> bool:
    """A Hugging Face ``datasets.Dataset`` (duck-typed: ``datasets`` is optional)."""
    return (
        hasattr(data, "column_names")
        and hasattr(data, "with_format")
        and not isinstance(data, Mapping)
    )


def _from_hf(data: Any, where: str) -> tuple[torch.Tensor, Any]:
    table = data.with_format("numpy")
    picked = _columns_of({c: c for c in data.column_names}, where)
    x = _tensor(table[picked[0]], f"{where}: column {picked[0]!r}")
    y = _labels(table[picked[1]], f"{where}: column {picked[1]!r}") if len(picked) > 1 else None
    return x, y


def _all_labels(held: HeldData) -> Any:
    """Labels of every source in order; unlabeled sources are -1 (or None)."""
    given = [y for _, _, y in held.sources if y is not None]
    if all(isinstance(y, np.ndarray) for y in given):
        return np.concatenate(
            [
                np.full(len(x), UNLABELED, dtype=np.int64) if y is None else np.asarray(y, np.int64)
                for _, x, y in held.sources
            ]
        )
    out: list[Any] = []
    for _, x, y in held.sources:
        out += [None] * len(x) if y is None else list(y)
    return out


def _digest(held: HeldData) -> str:
    """A digest of every source's split, inputs and labels."""
    digest = hashlib.sha256()
    for split, x, y in held.sources:
        digest.update(f"{split}:{tuple(x.shape)}:{x.dtype}".encode())
        digest.update(x.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        if isinstance(y, np.ndarray):
            digest.update(np.ascontiguousarray(y).tobytes())
        elif y is not None:
            digest.update(repr(list(y)).encode())
    return digest.hexdigest()[:24]


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``in_memory`` dataset."""
    register("in_memory", InMemory)
