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


_RACE_SCRIPT = """
import sys, time
import mlflow
from kdforge.plugins.datasets.digits import Digits
from kdforge.tracking.run_metadata import log_dataset_inputs

mlflow.set_tracking_uri(sys.argv[1])
splits = Digits().load(0)
start = float(sys.argv[2])
for round_ in range(int(sys.argv[3])):
    mlflow.set_experiment(f"race-{round_}")
    with mlflow.start_run():
        time.sleep(max(0.0, start + round_ * 0.5 - time.time()))
        log_dataset_inputs(splits, "digits")
"""

_RACE_ROUNDS = 12


def test_searches_logging_the_same_dataset_at_once_all_succeed(tmp_path: Path) -> None:
    """Processes inserting one dataset row at once: the losers link it instead of failing.

    Each round, every process logs the same dataset into a new experiment at the same
    instant; without the retry, some round ends in SQLite's unique-index error.
    """
    import sys
    import time

    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    for round_ in range(_RACE_ROUNDS):
        client.create_experiment(f"race-{round_}")
    script = tmp_path / "race.py"
    script.write_text(_RACE_SCRIPT)
    start = time.time() + 12
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), uri, str(start), str(_RACE_ROUNDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=300)[0].decode() for proc in procs]
    for proc, text in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, text[-2000:]
    ids = [client.get_experiment_by_name(f"race-{r}").experiment_id for r in range(_RACE_ROUNDS)]
    runs = client.search_runs(ids)
    assert len(runs) == 4 * _RACE_ROUNDS
    assert all(len(run.inputs.dataset_inputs) == 3 for run in runs)
