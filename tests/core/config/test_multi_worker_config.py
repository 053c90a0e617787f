"""Config of multi-worker trials: workers_per_trial, gpus_per_trial above 1, parallel."""

from __future__ import annotations

import pytest

from kdforge.config import SearchConfig, validate_config
from kdforge.errors import ConfigError

VALID = {
    "name": "x",
    "dataset": {"name": "digits"},
    "teacher": {"name": "checkpoint", "params": {"path": "t.pt"}},
    "student": {"name": "mlp"},
}


def _search(**search) -> SearchConfig:
    return validate_config({**VALID, "search": search}, SearchConfig)


def test_workers_default_to_one_or_one_per_gpu() -> None:
    assert _search().search.trial_workers == 1
    assert _search(gpus_per_trial=0.5).search.trial_workers == 1
    assert _search(gpus_per_trial=1).search.trial_workers == 1
    assert _search(gpus_per_trial=4).search.trial_workers == 4
    assert _search(gpus_per_trial=4, workers_per_trial=2).search.trial_workers == 2
    config = _search(workers_per_trial=2, parallel="fsdp")  # FSDP runs on gloo too
    assert (config.search.trial_workers, config.search.parallel) == (2, "fsdp")


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"workers_per_trial": 0}, r"search\.workers_per_trial: .*greater than or equal to 1"),
        ({"gpus_per_trial": 1.5}, r"search: .*gpus_per_trial \(1\.5\) above 1 must be a whole"),
        (
            {"gpus_per_trial": 3, "workers_per_trial": 2},
            r"search: .*whole multiple of workers_per_trial \(2\)",
        ),
        (
            {"gpus_per_trial": 1, "workers_per_trial": 2},
            r"search: .*whole multiple of workers_per_trial \(2\)",
        ),
        ({"workers_per_trial": 3}, r"search: .*batch_size \(64\) must divide by workers_per_trial"),
        ({"workers_per_trial": 2, "parallel": "zero3"}, r"search\.parallel: .*'ddp'"),
    ],
)
def test_bad_worker_settings_name_the_key(search: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _search(**search)
