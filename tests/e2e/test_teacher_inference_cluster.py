"""Teacher inference as a Ray job on a two-node cluster: actors run on both nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import test_cluster

pytestmark = pytest.mark.slow

# The head and a second `ray start` node on 127.0.0.1, one CPU each (tests/e2e/test_cluster.py).
two_node_cluster = test_cluster.two_node_cluster

# A driver joining the cluster, as a search does: the teacher is rebuilt on each actor
# from its `teacher:` reference, and the outputs are compared with the local path.
_DRIVER = """
import json, sys
import ray, torch
from kdforge.config import PluginRef
from kdforge.config.teacher_inference_settings import TeacherInferenceSettings
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.teacher.inference import TeacherInference
from kdforge.teacher.outputs import compute_teacher_outputs

address, path = sys.argv[1:]
ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
splits = Digits(Digits.Params()).load(0)
teacher = CheckpointTeacher(CheckpointTeacher.Params(path=path))
teacher.load()
settings = TeacherInferenceSettings(batch_size=128)  # where: auto, actors: as CPUs allow
inference = TeacherInference(
    settings, teacher_ref=PluginRef(name="checkpoint", params={"path": path}), on_cluster=True
)
lines = []
outputs = inference(teacher, splits, emit=lines.append)
local = compute_teacher_outputs(teacher, splits, 128, emit=lambda _: None)
names = ("train", "val", "test")
print(json.dumps({
    "driver_node": ray.get_runtime_context().get_node_id(),
    "nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
    "actor_nodes": inference.last_job.nodes,
    "equal": all(torch.equal(getattr(outputs, s), getattr(local, s)) for s in names),
    "lines": lines,
}))
"""


def test_teacher_actors_run_on_the_worker_node(
    two_node_cluster: str, digits_teacher_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER, two_node_cluster, str(digits_teacher_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Two actors of one CPU each on two one-CPU nodes: one ran on the worker node.
    assert sorted(result["actor_nodes"]) == result["nodes"], result
    assert any(node != result["driver_node"] for node in result["actor_nodes"])
    assert result["equal"], result
    assert any("2 actors on 2 nodes" in line for line in result["lines"]), result["lines"]
