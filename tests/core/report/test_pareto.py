"""Pareto fronts: the non-dominated set by hand and by brute force, and a 2-objective search."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kdforge.config import SearchConfig
from kdforge.report.leaderboard import TrialRow
from kdforge.report.pareto import dominates, format_front, pareto_front, write_front_csv
from kdforge.report.plots import plot_pareto
from tests.conftest import tiny_search_config

ACC_PARAMS = [("val_acc", "max"), ("params", "min")]


def _row(number: int, acc: float, params: int, status: str = "finished", **kw: object) -> TrialRow:
    return TrialRow(
        number=number,
        trial_id=f"t{number}",
        status=status,
        params=params,
        val_acc=acc,
        test_acc=acc,
        epochs=3,
        lr=0.01,
        checkpoint="/ckpt" if status == "finished" else None,
        arch={"depth": 1, "width_0": number},
        **kw,  # type: ignore[arg-type]
    )


def test_dominates_respects_directions() -> None:
    modes = ["max", "min"]
    assert dominates([0.9, 100], [0.8, 200], modes)
    assert dominates([0.9, 100], [0.9, 200], modes)  # equal accuracy, fewer params
    assert not dominates([0.9, 100], [0.9, 100], modes)  # equal is not better
    assert not dominates([0.95, 300], [0.9, 100], modes)  # a trade-off


def test_front_by_hand() -> None:
    rows = [
        _row(0, 0.95, 5000),
        _row(1, 0.93, 1000),
        _row(2, 0.93, 2000),  # dominated by 1
        _row(3, 0.80, 400),
        _row(4, 0.70, 900),  # dominated by 3
        _row(5, 0.99, 100, status="stopped"),  # not exportable: never on the front
        _row(6, 0.0, 50, status="rejected"),
        _row(7, 0.93, 1000),  # ties with 1: both kept
    ]
    front = pareto_front(rows, ACC_PARAMS)
    assert [r.number for r in front] == [0, 1, 7, 3]
    table = format_front(front, ACC_PARAMS, chosen=rows[1])
    marked = [line.split() for line in table.splitlines() if line.lstrip().startswith("*")]
    assert "4 students" in table and marked == [["*", "001", "0.9300", "1,000", "0.9300", "-", "-"]]


def test_front_is_non_dominated_and_covers_the_rest() -> None:
    rng = random.Random(0)
    objectives = [("val_acc", "max"), ("params", "min"), ("latency_ms", "min")]
    rows = [
        _row(i, rng.random(), rng.randint(100, 10_000), latency_ms=rng.uniform(0.1, 5.0))
        for i in range(60)
    ]
    front = pareto_front(rows, objectives)
    modes = [m for _, m in objectives]

    def values(r: TrialRow) -> list[float]:
        return [float(r.objective(n) or 0.0) for n, _ in objectives]

    assert front
    for row in front:
        assert not any(dominates(values(o), values(row), modes) for o in rows)
    for row in rows:
        if row not in front:
            assert any(dominates(values(f), values(row), modes) for f in front)
    # A row without a value for an objective (latency not measured) is not a candidate.
    rows.append(_row(99, 1.0, 1))
    assert 99 not in [r.number for r in pareto_front(rows, objectives)]


def test_front_files(tmp_path: Path) -> None:
    rows = [_row(0, 0.95, 5000), _row(1, 0.9, 1000), _row(2, 0.5, 3000)]
    front = pareto_front(rows, ACC_PARAMS)
    csv_text = write_front_csv(front, ACC_PARAMS, tmp_path / "pareto.csv").read_text()
    assert csv_text.splitlines()[0].startswith("trial,trial_id,val_acc,params")
    assert len(csv_text.splitlines()) == 1 + 2
    png = plot_pareto(rows, front, ACC_PARAMS, tmp_path / "pareto.png", chosen=front[1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sampler_and_metric_lists() -> None:
    import optuna

    from kdforge.search.sampler import make_sampler, searcher_metric_mode

    base = tiny_search_config(Path("t.pt"), Path("/tmp"))
    single = SearchConfig.model_validate(base)
    assert searcher_metric_mode(single) == ("val_acc", "max")
    assert isinstance(make_sampler(single), optuna.samplers.TPESampler)
    two = SearchConfig.model_validate(
        {**base, "objectives": [{"name": "val_acc"}, {"name": "macs"}]}
    )
    assert searcher_metric_mode(two) == (["val_acc", "macs"], ["max", "min"])
    assert isinstance(make_sampler(two), optuna.samplers.NSGAIISampler)


MAX_PARAMS = 2000


@pytest.mark.slow
def test_two_objective_search_yields_a_non_dominated_front(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from kdforge.search.driver import run_search

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": 4,
            "search.epochs": 3,
            "search.grace_period": 3,  # no early stopping: every feasible student finishes
            "objectives": [{"name": "val_acc"}, {"name": "params"}],
            "constraints": {"max_params": MAX_PARAMS},
            "latency": {"repeats": 5, "warmup": 1, "batch_size": 8},
            "selection": {"rule": "most_accurate_under", "max_latency_ms": 1000.0},
            "baseline.enabled": False,
            "export.enabled": False,  # export + registry are covered by tests/e2e
        },
    )
    config = SearchConfig.model_validate(raw)
    lines: list[str] = []
    result = run_search(config, emit=lines.append)
    rows = result.rows
    rejected = [r for r in rows if r.status == "rejected"]
    finished = [r for r in rows if r.status == "finished"]
    # Constraints reject exactly the students over the limit, before any epoch.
    assert rejected and finished, [(r.status, r.params) for r in rows]
    assert all(r.params is not None and r.params > MAX_PARAMS and r.epochs == 0 for r in rejected)
    assert all(r.params is not None and r.params <= MAX_PARAMS for r in finished)
    assert all(r.macs and r.size_bytes for r in rows)
    summary = json.loads((result.search_dir / "summary.json").read_text())
    assert summary["rejected_trials"] == len(rejected)
    front = [r for r in rows if r.number in summary["pareto_front"]]
    modes = ["max", "min"]
    for row in front:
        assert row.status == "finished" and row.latency_ms is not None  # front is timed
        assert not any(
            dominates([o.val_acc, o.params], [row.val_acc, row.params], modes) for o in finished
        )
    for row in finished:
        if row not in front:
            assert any(
                dominates([f.val_acc, f.params], [row.val_acc, row.params], modes) for f in front
            )
    assert result.best is not None and result.best.latency_ms is not None
    assert result.best.val_acc == max(r.val_acc or 0.0 for r in finished)
    assert (result.search_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "Pareto front (val_acc max, params min)" in "\n".join(lines)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(result.parent_run_id)
    assert parent.data.metrics["pareto_size"] == len(front)
    assert parent.data.metrics["rejected_trials"] == len(rejected)
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"pareto.png", "pareto.csv"} <= artifacts
    for row in rows:
        nested = client.get_run(row.run_id)
        assert nested.data.metrics["macs"] == row.macs
        assert nested.data.tags["kdforge.status"] == ("rejected" if row in rejected else "finished")
