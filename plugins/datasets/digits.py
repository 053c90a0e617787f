"""Dataset ``digits``: scikit-learn's 8x8 handwritten digits, shipped with the package.

1,797 images of 10 classes, scaled to [0, 1] and shaped ``(1, 8, 8)``. Split with a
seeded, stratified train/val/test split; optionally a fraction of the training split
keeps its inputs but loses its labels, forming an unlabeled ``transfer`` split.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

import kdforge
from kdforge.data import UNLABELED, DataInfo, DataSplits, Split
from kdforge.interfaces import DatasetPlugin, PluginParams

# scikit-learn (~1 s to import) is imported by load(): plugins load at every registry
# build, and digits is only one of them.


class DigitsParams(PluginParams):
    """Parameters of the ``digits`` dataset."""

    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of rows for validation.")
    test_fraction: float = Field(0.2, gt=0, lt=0.5, description="Share of rows for test.")
    transfer_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of the training rows whose labels are hidden "
        "(unlabeled transfer split).",
    )


class Digits(DatasetPlugin):
    """scikit-learn's 8x8 handwritten digits (10 classes), no download needed."""

    name = "digits"
    Params = DigitsParams

    def load(self, seed: int) -> DataSplits:
        """Load and split the digits (stratified, seeded)."""
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        params = self.params
        assert isinstance(params, DigitsParams)
        bunch = load_digits()
        x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
        y = bunch.target.astype(np.int64)
        holdout = params.val_fraction + params.test_fraction
        x_train, x_rest, y_train, y_rest = train_test_split(
            x, y, test_size=holdout, stratify=y, random_state=seed
        )
        x_val, x_test, y_val, y_test = train_test_split(
            x_rest,
            y_rest,
            test_size=params.test_fraction / holdout,
            stratify=y_rest,
            random_state=seed,
        )
        transfer = None
        if params.transfer_fraction > 0:
            x_lab, x_unl, y_lab, _ = train_test_split(
                x_train,
                y_train,
                test_size=params.transfer_fraction,
                stratify=y_train,
                random_state=seed,
            )
            x_train, y_train = x_lab, y_lab
            transfer = Split(
                torch.from_numpy(x_unl), torch.full((len(x_unl),), UNLABELED, dtype=torch.long)
            )
        info = DataInfo(
            name="digits",
            input_shape=(1, 8, 8),
            num_classes=10,
            class_names=tuple(str(c) for c in range(10)),
        )
        return DataSplits(
            info=info,
            train=Split(torch.from_numpy(x_train), torch.from_numpy(y_train)),
            val=Split(torch.from_numpy(x_val), torch.from_numpy(y_val)),
            test=Split(torch.from_numpy(x_test), torch.from_numpy(y_test)),
            transfer=transfer,
        )


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``digits`` dataset."""
    register("digits", Digits)
