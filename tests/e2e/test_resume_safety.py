"""Resume never makes things worse: an unreadable Ray state stops it, keeping every
trial; a registration a kill interrupted leaves no orphan version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdforge.config import SearchConfig
from kdforge.errors import SearchError
from kdforge.search.driver import resume_search, run_search
from kdforge.search.state_digest import record_state_digests
from tests.conftest import tiny_search_config

pytestmark = pytest.mark.slow

SMALL = {
    "search.num_trials": 2,
    "search.epochs": 2,
    "search.grace_period": 2,
    "search.max_concurrent": 1,
    "baseline.enabled": False,
}


def test_resume_stops_when_rays_state_is_truncated(
    ray_session, digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    raw = tiny_search_config(digits_teacher_path, tmp_path, **SMALL)
    result = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    folder = result.search_dir
    client = MlflowClient(raw["tracking"]["uri"])
    experiment = client.get_experiment_by_name("kdforge").experiment_id
    before = {r.info.run_id for r in client.search_runs([experiment])}
    # A full disk cut Ray's files short; the driver died before finishing.
    for path in (folder / "tune").glob("*"):
        if path.is_file() and path.suffix in {".json", ".pkl"}:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
    # kdforge records a state file's digest right after Tune writes it: the truncated
    # files are the ones it saw (the digest check passes; Ray cannot read them).
    record_state_digests(folder / "tune")
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps({**state, "phase": "tuning"}))
    (folder / "summary.json").unlink()

    with pytest.raises(SearchError, match="cannot resume") as caught:
        resume_search(folder, emit=lambda _: None)
    assert "kept" in str(caught.value)
    after = client.search_runs([experiment])
    assert {r.info.run_id for r in after} == before  # nothing deleted, nothing new
    assert all(r.info.status != "RUNNING" for r in after)
    versions = client.search_model_versions("name = 'tiny-student'")
    assert [str(v.version) for v in versions] == ["1"]


def test_a_kill_during_registration_leaves_no_orphan_version(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    raw = tiny_search_config(digits_teacher_path, tmp_path, **SMALL)
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    # Killed right after the version is created, before its tags, alias and summary.
    killer = (
        "import os, signal, sys\n"
        "import kdforge.search.finalize as f\n"
        "f.promote_version = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from kdforge.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", killer, "search", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    client = MlflowClient(raw["tracking"]["uri"])
    assert len(client.search_model_versions("name = 'tiny-student'")) == 1  # the orphan
    (folder,) = (tmp_path / "runs" / "tiny").iterdir()
    resumed = subprocess.run(
        [sys.executable, "-m", "kdforge", "resume", str(folder)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "left by a registration a kill interrupted" in resumed.stdout
    versions = client.search_model_versions("name = 'tiny-student'")
    summary = json.loads((folder / "summary.json").read_text())
    assert [str(v.version) for v in versions] == [summary["registered_model_version"]]
    champion = client.get_model_version_by_alias("tiny-student", "champion")
    assert str(champion.version) == summary["registered_model_version"]
