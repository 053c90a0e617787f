"""``TrackingWriter.log_metrics_later``: queued metrics reach MLflow before later calls."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from kdforge.tracking.journal import TrackingWriter


def test_queued_metrics_are_written_before_the_run_ends(tracking_uri: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("queue")
    writer = TrackingWriter(tracking_uri, tmp_path / "journal.jsonl")
    writer.create_run("t1", experiment, run_name="trial-000", tags={})
    for epoch in (1, 2, 3):
        writer.log_metrics_later("t1", [("val_acc", 0.1 * epoch, 1000 + epoch, epoch)])
    writer.set_terminated("t1", "FINISHED")  # waits for the queue first

    run_id = writer.run_ids["t1"]
    history = client.get_metric_history(run_id, "val_acc")
    assert [(m.step, round(m.value, 3)) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not writer.offline and not (tmp_path / "journal.jsonl").exists()
    # Tune pickles its callbacks (and so the writer) into the experiment state.
    copy = pickle.loads(pickle.dumps(writer))
    assert copy.run_ids == writer.run_ids
    copy.log_metrics_later("t1", [("val_acc", 0.5, 2000, 4)])
    copy.flush()
    assert len(client.get_metric_history(run_id, "val_acc")) == 4


def test_queued_metrics_are_journaled_when_tracking_fails(tmp_path: Path) -> None:
    writer = TrackingWriter("nosuchscheme://nowhere", tmp_path / "journal.jsonl", {"t1": "r1"})
    with pytest.warns(RuntimeWarning, match="kept in"):
        writer.log_metrics_later("t1", [("val_acc", 0.5, 1000, 1)])
        writer.flush()
    assert writer.offline
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"op": "log_batch"' in lines[0] and '"val_acc"' in lines[0]
