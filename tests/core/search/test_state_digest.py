"""``kdforge resume`` refuses Ray state files kdforge did not see Tune write (issue 20).

A real (tiny) search records its Tune state digests; an untouched folder passes the
check; a ``tuner.pkl`` replaced by a hostile pickle is refused by the real CLI before
Ray reads it (the marker never appears), and ``--trust-state`` is the opt-in that lets
Ray unpickle it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdforge.errors import SearchError
from kdforge.search.state_digest import (
    DIGEST_FILE,
    check_state_digests,
    record_state_digests,
)
from tests._hostile import write_hostile_pickle


def test_recorded_files_pass_and_replaced_or_added_ones_are_refused(tmp_path: Path) -> None:
    tune = tmp_path / "tune"
    (tune / "trial_1").mkdir(parents=True)
    (tune / "tuner.pkl").write_bytes(b"v1")
    (tune / "trial_1" / "params.pkl").write_bytes(b"p")
    (tune / "trial_1" / "result.json").write_text("{}")  # not a state file
    record_state_digests(tune)
    check_state_digests(tune)
    (tune / "tuner.pkl").write_bytes(b"v2")  # Tune rewrites it: recorded again
    record_state_digests(tune)
    (tune / "tuner.pkl").write_bytes(b"v1")  # an earlier version Tune wrote is fine
    (tune / "trial_1" / "result.json").write_text('{"a": 1}')
    check_state_digests(tune)
    write_hostile_pickle(tune / "trial_1" / "params.pkl", tmp_path / "marker")
    with pytest.raises(SearchError, match=r"trial_1/params\.pkl") as info:
        check_state_digests(tune)
    assert "--trust-state" in str(info.value.hint)
    check_state_digests(tune, trust=True)
    (tmp_path / DIGEST_FILE).unlink()
    with pytest.raises(SearchError, match="no digest record"):
        check_state_digests(tune)


@pytest.mark.slow
def test_resume_refuses_a_replaced_tuner_pkl(
    digits_teacher_path: Path, tmp_path: Path, ray_session
) -> None:
    from kdforge.config import SearchConfig
    from kdforge.search.driver import resume_search, run_search
    from tests.conftest import tiny_search_config

    raw = tiny_search_config(
        digits_teacher_path,
        tmp_path,
        **{
            "search.num_trials": 2,
            "search.epochs": 2,
            "search.grace_period": 1,
            "baseline.enabled": False,
            "export.enabled": False,
        },
    )
    result = run_search(SearchConfig.model_validate(raw), emit=lambda _: None)
    search_dir = result.search_dir
    record = json.loads((search_dir / DIGEST_FILE).read_text())
    assert "tuner.pkl" in record and any(k.startswith("experiment_state") for k in record)
    check_state_digests(search_dir / "tune")  # what Tune wrote last was recorded

    marker = tmp_path / "PWNED"
    write_hostile_pickle(search_dir / "tune" / "tuner.pkl", marker)
    done = subprocess.run(
        [sys.executable, "-m", "kdforge", "resume", str(search_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "tuner.pkl" in lines[0] and "--trust-state" in lines[1]
    assert "Traceback" not in done.stderr
    assert not marker.exists()

    with pytest.raises(Exception):  # noqa: B017 - whatever Ray makes of a non-Tuner pickle
        resume_search(search_dir, emit=lambda _: None, trust_state=True)
    assert marker.read_text() == "pwned"  # the opt-in really lets Ray unpickle it
