"""Dataset ``tabular``: a CSV, TSV, JSON Lines or Parquet table with a target column.

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
from pydantic import Field

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
from kdforge.plugins.datasets._tables import is_blank, load_frame, require_columns

# pandas (~0.5 s to import) is imported when a table is read: plugins load at every
# registry build, most of them never read one.


class TabularParams(FileDatasetParams):
    """Parameters of the ``tabular`` dataset."""

    path: str = Field(description="CSV/TSV/JSONL/Parquet file; may hold a {split} placeholder.")
    target: str = Field(description="Column holding the class labels.")
    features: list[str] | None = Field(
        None, description="Columns used as inputs (default: all but target and split_column)."
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
        frame, given = load_frame(
            params.path,
            params.split_column,
            where,
            label_column=params.target,
            use_transfer=params.use_transfer,
        )
        require_columns(frame, [params.target], where, "target")
        features = params.features or [str(c) for c in frame.columns if str(c) != params.target]
        require_columns(frame, features, where, "features")
        if params.target in features:
            raise DataError(f"{where}: the target {params.target!r} is also a feature")
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
        labels, classes = encode_labels(frame[params.target].tolist(), f"{where}: target")
        rows = assign_splits(labels, given, params, seed, where)
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
        )
        splits = make_splits(info, rows, labels, inputs_for)
        return apply_storage(
            splits,
            storage=params.storage,
            memory_limit_mb=params.memory_limit_mb,
            num_workers=params.num_workers,
        )


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``tabular`` dataset."""
    register("tabular", Tabular)
