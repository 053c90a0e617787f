"""Dataset ``tabular``: a CSV, TSV, JSON Lines or Parquet table with target columns.

One of three keys says what the model predicts (and ``DataInfo.task``):

* ``target: species``: a class column (classification; int64 class ids);
* ``targets: [price, demand]``: numeric columns (regression; float32 ``(n, R)``);
* ``labels: [tag_a, tag_b]``: 0/1 (or true/false) columns (multilabel; float32
  ``(n, L)``).

An empty cell of a regression or multilabel column is an unknown value (NaN); a row
with every cell empty is unlabeled, like an empty ``target``.

Numeric columns are standardised (mean and standard deviation of the training split;
missing values become the training mean); categorical columns (text, or listed in
``categorical``) are one-hot or ordinal encoded with the categories seen in the
training split (the ``max_categories`` most frequent; others, unseen and missing
values encode as zeros). All statistics are fitted on the training split only, so
nothing about val, test or transfer rows leaks into the inputs. Rows with an empty
target are unlabeled and join the ``transfer`` split. Inputs are float32 vectors
``(n_features,)``; the plugin's ``feature_names`` lists them after ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

import kdforge
from kdforge.batching import apply_storage
from kdforge.data import DataInfo, DataSplits
from kdforge.errors import DataError
from kdforge.interfaces import DatasetPlugin
from kdforge.plugins.datasets._splits import (
    FileDatasetParams,
    assign_splits,
    dataset_name,
    encode_labels,
    make_splits,
)
from kdforge.plugins.datasets._tables import (
    RowOrigins,
    is_blank,
    load_frame_with_origins,
    require_columns,
)
from kdforge.plugins.datasets._targets import (
    binary_values,
    make_float_splits,
    row_codes,
    unstratified,
)

# pandas (~0.5 s to import) is imported when a table is read: plugins load at every
# registry build, most of them never read one.


class TabularParams(FileDatasetParams):
    """Parameters of the ``tabular`` dataset."""

    path: str = Field(description="CSV/TSV/JSONL/Parquet file; may hold a {split} placeholder.")
    target: str | None = Field(
        None, description="Column holding the class labels (classification)."
    )
    targets: list[str] | None = Field(
        None,
        description="Numeric columns to predict (regression); empty cells are unknown values.",
    )
    labels: list[str] | None = Field(
        None,
        description="0/1 or true/false columns, one per label (multilabel); empty cells "
        "are unknown labels.",
    )
    features: list[str] | None = Field(
        None,
        description="Columns used as inputs (default: all but the target, targets or "
        "labels columns and split_column).",
    )
    categorical: list[str] | None = Field(
        None, description="Columns encoded as categories (default: the non-numeric ones)."
    )
    split_column: str | None = Field(
        None, description="Column naming each row's split (train/val/test/transfer)."
    )
    categorical_encoding: Literal["one_hot", "ordinal"] = Field(
        "one_hot", description="one_hot: a 0/1 input per category; ordinal: one number."
    )
    max_categories: int = Field(
        50, ge=1, description="Keep the most frequent categories of the training split."
    )
    standardize: bool = Field(True, description="Scale numeric columns to mean 0, std 1.")

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> TabularParams:
        given = [k for k in ("target", "targets", "labels") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of target (a class column), targets (numeric columns, "
                "regression) or labels (0/1 columns, multilabel); "
                + (f"got {' and '.join(given)}" if given else "none is set")
            )
        for key in ("targets", "labels"):
            columns = getattr(self, key)
            if columns is None:
                continue
            if not columns:
                raise ValueError(f"{key} lists no column")
            repeated = sorted({c for c in columns if columns.count(c) > 1})
            if repeated:
                raise ValueError(f"{key} lists {repeated} more than once")
        return self

    @property
    def task(self) -> str:
        """``classification``, ``regression`` or ``multilabel``: which key is set."""
        if self.targets is not None:
            return "regression"
        if self.labels is not None:
            return "multilabel"
        return "classification"

    @property
    def target_columns(self) -> list[str]:
        """The column(s) the model predicts."""
        return self.targets or self.labels or [str(self.target)]


@dataclass
class TableEncoder:
    """Column statistics fitted on training rows; turns a frame into a float matrix."""

    numeric: list[str]
    categorical: list[str]
    encoding: str = "one_hot"
    standardize: bool = True
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, frame: Any, max_categories: int) -> TableEncoder:
        """Learn means, standard deviations and categories from ``frame``."""
        for column in self.numeric:
            values = _numbers(frame[column])
            finite = values[np.isfinite(values)]
            self.means[column] = float(finite.mean()) if len(finite) else 0.0
            std = float(finite.std()) if len(finite) else 0.0
            self.stds[column] = std if std > 0 else 1.0
        for column in self.categorical:
            counts: dict[str, int] = {}
            for value in _categories(frame[column]):
                if value is not None:
                    counts[value] = counts.get(value, 0) + 1
            ranked = sorted(counts, key=lambda c: (-counts[c], c))[:max_categories]
            self.categories[column] = sorted(ranked)
        return self

    @property
    def feature_names(self) -> list[str]:
        """Names of the encoded inputs, in order."""
        names = list(self.numeric)
        for column in self.categorical:
            if self.encoding == "one_hot":
                names += [f"{column}={c}" for c in self.categories[column]]
            else:
                names.append(column)
        return names

    def transform(self, frame: Any) -> np.ndarray:
        """Encode ``frame`` (any rows) with the fitted statistics."""
        blocks = []
        for column in self.numeric:
            values = _numbers(frame[column])
            values = np.where(np.isfinite(values), values, self.means[column])
            if self.standardize:
                values = (values - self.means[column]) / self.stds[column]
            blocks.append(values[:, None])
        for column in self.categorical:
            known = {c: i for i, c in enumerate(self.categories[column])}
            codes = np.array(
                [known.get(v, -1) if v is not None else -1 for v in _categories(frame[column])]
            )
            if self.encoding == "one_hot":
                onehot = np.zeros((len(codes), len(known)))
                hit = codes >= 0
                onehot[np.flatnonzero(hit), codes[hit]] = 1.0
                blocks.append(onehot)
            else:
                blocks.append((codes + 1.0)[:, None])  # 0 = unseen or missing
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1).astype(np.float32)


def _numbers(series: Any) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _categories(series: Any) -> list[str | None]:
    return [None if is_blank(v) else str(v) for v in series.tolist()]


class Tabular(DatasetPlugin):
    """A CSV/Parquet table: numeric and categorical features, fitted on train only."""

    name = "tabular"
    Params = TabularParams

    def load(self, seed: int) -> DataSplits:
        """Read the table, split it, fit the encoder on train and encode every split."""
        import pandas as pd

        params = self.params
        assert isinstance(params, TabularParams)
        where = f"dataset 'tabular' (path={params.path})"
        key = {"classification": "target", "regression": "targets", "multilabel": "labels"}
        task = params.task
        predicted = params.target_columns
        frame, given, origins = load_frame_with_origins(
            params.path,
            params.split_column,
            where,
            label_column=predicted,
            use_transfer=params.use_transfer,
        )
        require_columns(frame, predicted, where, key[task])
        features = params.features or [str(c) for c in frame.columns if str(c) not in predicted]
        require_columns(frame, features, where, "features")
        for column in predicted:
            if column in features:
                raise DataError(f"{where}: the {key[task]} column {column!r} is also a feature")
        if params.categorical is not None:
            require_columns(frame, params.categorical, where, "categorical")
            categorical = [c for c in features if c in params.categorical]
        else:
            categorical = [
                c
                for c in features
                if not (
                    pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
                )
            ]
        numeric = [c for c in features if c not in categorical]
        targets: np.ndarray | None = None
        if task == "classification":
            labels, classes = encode_labels(frame[params.target].tolist(), f"{where}: target")
            rows = assign_splits(labels, given, params, seed, where)
        else:
            read = _real_column if task == "regression" else _binary_column
            targets = np.stack(
                [read(frame[c], c, origins, where) for c in predicted], axis=1
            ).astype(np.float32)
            if not (~np.isnan(targets)).any():
                raise DataError(f"{where}: no row has a value in {key[task]} {predicted}")
            classes = tuple(predicted)
            rows = assign_splits(row_codes(targets), given, unstratified(params), seed, where)
        encoder = TableEncoder(
            numeric, categorical, params.categorical_encoding, params.standardize
        )
        encoder.fit(frame.iloc[rows.train], params.max_categories)
        self.encoder = encoder
        self.feature_names = encoder.feature_names
        if not self.feature_names:
            raise DataError(f"{where}: no input features left after encoding")

        def inputs_for(_: str, picked: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(encoder.transform(frame.iloc[picked]))

        info = DataInfo(
            name=dataset_name(params.path),
            input_shape=(len(self.feature_names),),
            num_classes=len(classes),
            class_names=classes,
            task=task,
        )
        if targets is None:
            splits = make_splits(info, rows, labels, inputs_for)
        else:
            splits = make_float_splits(info, rows, targets, inputs_for)
        return apply_storage(
            splits,
            storage=params.storage,
            memory_limit_mb=params.memory_limit_mb,
            num_workers=params.num_workers,
        )


def _real_column(series: Any, column: str, origins: RowOrigins, where: str) -> np.ndarray:
    """A regression column as float64 (NaN where empty); refuse text and infinities."""
    values = _numbers(series)
    for row in np.flatnonzero(~np.isfinite(values)):
        raw = series.iloc[row]
        if np.isnan(values[row]) and is_blank(raw):
            continue
        raise DataError(
            f"{where}: targets column {column!r} holds {_shown(raw)} at "
            f"{origins.describe(int(row))}, not a finite number",
            hint="regression targets are numbers; leave a cell empty for an unknown value",
        )
    return values


def _shown(value: Any) -> str:
    """A cell as the file shows it: ``'abc'``, ``2``, ``inf`` (no ``np.int64(...)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def _binary_column(series: Any, column: str, origins: RowOrigins, where: str) -> np.ndarray:
    """A multilabel column as 0.0/1.0 (NaN where empty); refuse any other value."""
    values, bad = binary_values(series.tolist())
    if bad is not None:
        raise DataError(
            f"{where}: labels column {column!r} holds {_shown(series.iloc[bad])} at "
            f"{origins.describe(bad)}; a label is 0, 1, true or false",
            hint="leave a cell empty for an unknown label",
        )
    return values


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``tabular`` dataset."""
    register("tabular", Tabular)
