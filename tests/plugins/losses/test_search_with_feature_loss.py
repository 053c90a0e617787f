"""End to end: a search whose loss composes hinton_kd with FitNets (searched weight).

Real Ray and MLflow: teacher features are computed once in the driver, shipped to
the trials, the adapters train with the students, and the distilled baseline
(finalize) uses the same features.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdforge.config import SearchConfig
from kdforge.search.driver import run_search
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow


def test_composite_feature_loss_search(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    loss = {
        "name": "composite",
        "params": {
            "terms": [
                {"name": "hinton_kd", "weight": 1.0, "hparams": {"temperature": 4.0}},
                {
                    "name": "fitnets",
                    "weight": {"low": 0.1, "high": 10, "log": True},
                    "params": {"ce_weight": 0.0},
                },
            ]
        },
    }
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        loss=loss,
        **{
            "search.num_trials": 2,
            "search.epochs": 3,
            "search.grace_period": 3,
            "search.lr": {"low": 3e-3, "high": 1e-2, "log": True},
            "export.enabled": False,
        },
    )
    result = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    assert [r.status for r in result.rows if r.status not in ("finished", "stopped")] == []
    assert len(result.rows) == 2
    for row in result.rows:
        assert 0.1 <= row.loss_hparams["fitnets.weight"] <= 10
        assert row.loss_hparams["hinton_kd.temperature"] == 4.0
        assert row.val_acc is not None
    # With a sane learning-rate range the best student must have learned something.
    assert result.best is not None and result.best.val_acc is not None
    assert result.best.val_acc > 0.5
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert len(summary["distilled_test_acc_runs"]) == 1
    assert summary["distilled_test_acc_runs"][0] > 0.5
