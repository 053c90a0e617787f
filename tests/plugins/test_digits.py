"""The digits dataset: seeded, stratified, complete splits."""

from __future__ import annotations

import torch

from kdforge.plugins.datasets.digits import Digits, DigitsParams


def test_splits_are_disjoint_complete_and_stratified() -> None:
    splits = Digits().load(seed=0)
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797
    assert splits.info.input_shape == (1, 8, 8) and splits.info.num_classes == 10
    assert splits.train.x.shape[1:] == (1, 8, 8) and splits.train.x.dtype == torch.float32
    assert float(splits.train.x.max()) <= 1.0
    for split in (splits.train, splits.val, splits.test):
        counts = torch.bincount(split.y, minlength=10).float()
        share = counts / counts.sum()
        assert float(share.max() - share.min()) < 0.05
    rows = {
        tuple(r.tolist()) for s in (splits.train, splits.val, splits.test) for r in s.x.flatten(1)
    }
    assert len(rows) > 1700


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b, c = Digits().load(0), Digits().load(0), Digits().load(1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    torch.testing.assert_close(a.test.x, b.test.x)


def test_transfer_fraction_hides_labels() -> None:
    splits = Digits(DigitsParams(transfer_fraction=0.5)).load(0)
    assert splits.transfer is not None
    assert bool((splits.transfer.y == -1).all())
    assert abs(len(splits.transfer) - len(splits.train)) <= 1
