"""kdforge checkpoints: round trip, and unsafe or broken files refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from kdforge import build_checkpoint_model, load_checkpoint, save_checkpoint
from kdforge.data import DataInfo
from kdforge.errors import CheckpointError
from kdforge.search_spaces.mlp import MLPSpace

INFO = DataInfo(name="t", input_shape=(1, 8, 8), num_classes=10)
ARCH = {"depth": 1, "width_0": 16}


def _saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    model = MLPSpace().build(ARCH, INFO)
    path = save_checkpoint(tmp_path / "m.pt", space="mlp", arch=ARCH, info=INFO, model=model)
    return path, model


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    path, model = _saved(tmp_path)
    rebuilt = build_checkpoint_model(load_checkpoint(path))
    x = torch.randn(5, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(rebuilt(x), model(x))


class _Payload:
    """Unpickling this creates a file: proof that pickled code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_payload_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "kdforge-checkpoint", "x": _Payload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_missing_directory_and_foreign_files(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)
    foreign = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a kdforge checkpoint"):
        load_checkpoint(foreign)


def test_weights_that_do_not_fit_the_architecture(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    payload = load_checkpoint(path)
    payload["arch"] = {"depth": 1, "width_0": 17}
    with pytest.raises(CheckpointError, match="do not fit"):
        build_checkpoint_model(payload)
