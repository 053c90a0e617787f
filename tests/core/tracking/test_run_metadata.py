"""Parent-run metadata: tags (versions, commits, plugins) and the dataset as MLflow input."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from kdforge.config import SearchConfig
from kdforge.data import DataInfo, DataSplits, LazyInputs, Split

REPO = Path(__file__).resolve().parents[3]


def _config() -> SearchConfig:
    return SearchConfig.model_validate(
        {
            "name": "demo",
            "dataset": {"name": "digits"},
            "teacher": {"name": "checkpoint", "params": {"path": "teacher.pt"}},
            "student": {"name": "mlp", "params": {"max_depth": 2}},
            "loss": {"name": "hinton_kd", "hparams": {"alpha": 0.5}},
        }
    )


class _Rows(LazyInputs):
    """Lazy inputs computed from the row number (stands in for files on disk)."""

    def __init__(self, n: int) -> None:
        self.n = n

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (4,)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def __len__(self) -> int:
        return self.n

    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.tensor([[float(i)] * 4 for i in indices])

    def fingerprint(self) -> str:
        return f"rows-{self.n}"


def test_tags_name_plugins_versions_and_commit() -> None:
    import kdforge
    from kdforge.tracking.run_metadata import search_tags

    tags = search_tags(_config())
    assert tags["kdforge.version"] == kdforge.__version__
    assert tags["kdforge.teacher"] == "checkpoint" and tags["kdforge.dataset"] == "digits"
    assert tags["kdforge.search_space"] == "mlp"
    assert json.loads(tags["kdforge.search_space.params"]) == {"max_depth": 2}
    assert json.loads(tags["kdforge.losses"])["hparams"] == {"alpha": 0.5}
    assert json.loads(tags["kdforge.teacher.params"]) == {"path": "teacher.pt"}
    if shutil.which("git") and (REPO / ".git").exists():
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert tags["kdforge.git_commit"].removesuffix("-dirty") == head


def test_git_commit_is_none_outside_a_work_tree(tmp_path: Path) -> None:
    from kdforge.tracking.run_metadata import git_commit

    assert git_commit(tmp_path) is None


def test_in_memory_splits_become_datasets_without_copies() -> None:
    from kdforge.plugins.datasets.digits import Digits
    from kdforge.tracking.run_metadata import dataset_inputs

    splits = Digits().load(0)
    inputs = dataset_inputs(splits, "digits")
    assert [(d.name, c) for d, c, _ in inputs] == [
        ("digits-train", "train"),
        ("digits-val", "validation"),
        ("digits-test", "test"),
    ]
    test = inputs[2][0]
    assert list(test.profile["features_shape"]) == [len(splits.test), 1, 8, 8]
    assert test.features.ctypes.data == splits.test.x.data_ptr()  # a view, not a copy
    assert len({d.digest for d, _, _ in inputs}) == 3
    # The digest follows the data's content fingerprint: same data, same digest.
    assert dataset_inputs(Digits().load(0), "digits")[2][0].digest == test.digest


def test_lazy_inputs_are_described_from_a_few_rows() -> None:
    from kdforge.tracking.run_metadata import LAZY_SAMPLE_ROWS, dataset_inputs

    y = torch.zeros(1000, dtype=torch.long)
    split = Split(_Rows(1000), y)
    splits = DataSplits(DataInfo("lazy", (4,), 2), split, split, split)
    (dataset, context, tags), *_ = dataset_inputs(splits, "lazy")
    assert context == "train" and tags["kdforge.rows"] == "1000"
    assert tags["kdforge.sampled_rows"] == str(LAZY_SAMPLE_ROWS)
    assert dataset.features.shape == (LAZY_SAMPLE_ROWS, 4)


@pytest.mark.parametrize(
    ("status", "last_epoch", "result", "expected"),
    [
        ("finished", 4, {}, "trained all 4 epochs"),
        ("stopped", 2, {}, "stopped early after epoch 2 of 4"),
        (
            "stopped",
            0,
            {"constraint_violation": "params 9,000 > 5,000"},
            "rejected before training",
        ),
    ],
)
def test_status_reason(status: str, last_epoch: int, result: dict, expected: str) -> None:
    from kdforge.tracking.run_metadata import status_reason

    assert status_reason(status, last_epoch, 4, result).startswith(expected)
