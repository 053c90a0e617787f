"""A search with its folder, teacher cache and dataset on S3 (a real moto server on
127.0.0.1), interrupted, then resumed from its s3:// URI on a machine without its files."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from kdforge.config import SearchConfig
from kdforge.errors import SearchError
from kdforge.search.driver import resume_search, run_search
from kdforge.search.interrupt import SearchInterrupted
from kdforge.search.remote import open_search_dir
from kdforge.search.state_digest import check_state_digests
from tests.conftest import tiny_search_config
from tests.s3_server import S3Server, s3_server

pytestmark = pytest.mark.slow

TRIALS = 3
EPOCHS = 4


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def _upload_digits(s3: S3Server) -> str:
    from sklearn.datasets import load_digits

    data = load_digits()
    buffer = io.BytesIO()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # as the digits plugin
    np.savez(buffer, x=x, y=data.target)
    s3.client().put_object(Bucket=s3.bucket, Key="data/digits.npz", Body=buffer.getvalue())
    return f"s3://{s3.bucket}/data/digits.npz"


def test_search_on_s3_is_interrupted_and_resumed_from_the_bucket(
    ray_session, s3: S3Server, digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    local = tmp_path / "this-machine"  # every local copy; removed before the resume
    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "name": "remote",
            "output_dir": f"s3://{s3.bucket}/runs",
            "dataset": {"name": "arrays", "params": {"path": _upload_digits(s3)}},
            "teacher_cache.dir": f"s3://{s3.bucket}/teacher-cache",
            "storage": {
                "endpoint_url": s3.endpoint,
                "region": "us-east-1",
                "local_dir": str(local),
            },
            "search.num_trials": TRIALS,
            "search.epochs": EPOCHS,
            "search.grace_period": EPOCHS,
            "search.max_concurrent": 1,
            "baseline.enabled": False,
        },
    )
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        if "trial 001 finished" in line and not any("interrupt sent" in x for x in lines):
            lines.append("interrupt sent")
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Tune stops, saving its state

    with pytest.raises(SearchInterrupted):
        run_search(SearchConfig.model_validate(raw), emit=emit)
    assert any("cache miss" in line for line in lines), lines
    (uri_line,) = [x for x in lines if x.startswith("kdforge search")]
    uri = uri_line.split("-> ", 1)[1]
    assert uri.startswith(f"s3://{s3.bucket}/runs/remote/")
    prefix = uri.split(f"{s3.bucket}/", 1)[1]
    stored = s3.list_keys(prefix)
    assert f"{prefix}/state.json" in stored and f"{prefix}/tune/tuner.pkl" in stored
    assert any(k.startswith("teacher-cache/") and k.endswith("meta.json") for k in s3.list_keys())

    shutil.rmtree(local)  # another machine: only the bucket has the search
    lines.clear()
    os.environ["AWS_ENDPOINT_URL"] = s3.endpoint  # the config is in the bucket
    try:
        result = resume_search(uri, emit=lines.append)
    finally:
        os.environ.pop("AWS_ENDPOINT_URL")
    assert any("resuming the search" in line for line in lines), lines
    assert any("cache hit" in line for line in lines), lines  # the entry came from S3
    assert len(result.rows) == TRIALS
    stored = set(s3.list_keys(prefix))
    for name in (
        "config.yaml",
        "summary.json",
        "leaderboard.csv",
        "best_config.yaml",
        "report.md",
        "student.pt",
        "student.onnx",
        "tune-state.sha256.json",
    ):
        assert f"{prefix}/{name}" in stored, name
    body = s3.client().get_object(Bucket=s3.bucket, Key=f"{prefix}/summary.json")["Body"]
    assert json.loads(body.read())["num_trials"] == TRIALS
    # The trial that finished before the interrupt was kept, not trained again.
    client = MlflowClient(raw["tracking"]["uri"])
    runs = client.search_runs(
        [client.get_experiment_by_name("kdforge").experiment_id],
        filter_string="attributes.run_name = 'trial 001'",
    )
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_acc")]
    assert steps == list(range(1, EPOCHS + 1))
    # The digest check ran on Tune's state as the bucket holds it ...
    assert (result.search_dir / "tune" / "tuner.pkl").is_file()
    assert result.search_dir.is_relative_to(local)
    # ... and refuses a state file someone replaced there.
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/tune/tuner.pkl", Body=b"evil")
    with pytest.raises(SearchError, match="refused to resume"):
        check_state_digests(open_search_dir(uri) / "tune")
    assert not any(
        "kdforge-test-secret" in path.read_text(errors="ignore")
        for path in local.rglob("*")
        if path.is_file() and path.suffix in {".yaml", ".json", ".csv", ".md"}
    )
