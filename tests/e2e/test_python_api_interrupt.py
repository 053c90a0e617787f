"""Ctrl-C during kdforge.distill: Ray released, MLflow runs KILLED, then kdforge.resume.

A real SIGINT goes to a Python process running the API (what "interrupt kernel" does
to a notebook), which then resumes the search in the same process, as a notebook's
next cell would.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRIALS = 4
EPOCHS = 200  # a few seconds per trial: the interrupt lands while the next one trains

SCRIPT = (
    textwrap.dedent(
        """
    import json, sys
    import ray, torch
    from mlflow.tracking import MlflowClient
    from torch import nn
    from sklearn.datasets import load_digits
    import kdforge

    folder = sys.argv[1]
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10))
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(teacher(x), y).backward()
        opt.step()
    uri = f"sqlite:///{folder}/mlflow.db"
    settings = dict(
        student={"name": "mlp", "params": {"max_depth": 2, "max_width": 128}},
        output_dir=f"{folder}/runs",
        tracking={"uri": uri},
        search={"num_trials": TRIALS, "epochs": EPOCHS, "grace_period": EPOCHS,
                "max_concurrent": 1},
        baseline={"enabled": False},
        export={"enabled": False},
    )
    try:
        kdforge.distill(teacher, (x, y), **settings)
        print("NOT INTERRUPTED", flush=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        search_dir = exc.search_dir
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("kdforge").experiment_id])
    state = {
        "search_dir": str(search_dir),
        "ray_up": ray.is_initialized(),
        "runs": {r.info.run_name: r.info.status for r in runs},
    }
    print("INTERRUPTED " + json.dumps(state), flush=True)
    # The next cell: resume, in a fresh process one would pass teacher= and data=.
    result = kdforge.resume(search_dir, teacher=teacher, data=(x, y))
    print("RESUMED " + json.dumps({"run_id": result.run_id, "rows": len(result.leaderboard)}),
          flush=True)
    """
    )
    .replace("TRIALS", str(TRIALS))
    .replace("EPOCHS", str(EPOCHS))
)


def test_sigint_stops_the_search_cleanly_and_resume_finishes_it(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    script = tmp_path / "notebook.py"
    script.write_text(SCRIPT)
    process = subprocess.Popen(
        [sys.executable, "-u", str(script), str(tmp_path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 420
    for line in process.stdout:
        lines.append(line)
        if "trial" in line and "finished" in line and "search" not in line:
            break  # one trial done, the next one training
        assert time.monotonic() < deadline, "".join(lines[-30:])
    time.sleep(1.5)  # > TUNE_GLOBAL_CHECKPOINT_S: the experiment state has the trial
    process.send_signal(signal.SIGINT)  # only the driver, as a notebook interrupt does
    rest, _ = process.communicate(timeout=600)
    output = "".join(lines) + rest
    assert process.returncode == 0, output[-4000:]

    stopped = json.loads(output.split("INTERRUPTED ", 1)[1].splitlines()[0])
    assert stopped["ray_up"] is False  # the Ray the search started is shut down
    runs = stopped["runs"]
    parents = [status for name, status in runs.items() if not name.startswith("trial ")]
    assert parents == ["KILLED"], runs
    trial_status = sorted(status for name, status in runs.items() if name.startswith("trial "))
    assert "FINISHED" in trial_status and "KILLED" in trial_status, runs
    assert "RUNNING" not in trial_status

    resumed = json.loads(output.split("RESUMED ", 1)[1].splitlines()[0])
    assert resumed["rows"] == TRIALS
    search_dir = Path(stopped["search_dir"])
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["num_trials"] == TRIALS
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_run(resumed["run_id"]).info.status == "FINISHED"
    children = client.search_runs(
        [client.get_run(resumed["run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{resumed['run_id']}'",
    )
    finished = [r for r in children if r.data.tags.get("kdforge.status") != "lost"]
    assert len(finished) == TRIALS
    assert all(r.info.status == "FINISHED" for r in finished)
