"""The KubeRay job keeps its state in a bucket: no shared volume, credentials from a
Secret on every pod (the workers write checkpoints), nothing secret in the config."""

from __future__ import annotations

from pathlib import Path

import yaml

from kdforge.config import SearchConfig, validate_config
from kdforge.storage import is_remote

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_kuberay_job_uses_object_storage_not_a_shared_volume() -> None:
    text = (DEPLOY / "kuberay-rayjob.yaml").read_text()
    docs = list(yaml.safe_load_all(text))
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    search = validate_config(yaml.safe_load(config_map["data"]["search.yaml"]), SearchConfig)
    assert is_remote(search.output_dir) and search.storage.endpoint_url
    assert "persistentVolumeClaim" not in text
    assert "SECRET_ACCESS_KEY" not in config_map["data"]["search.yaml"]
    cluster = next(d for d in docs if d["kind"] == "RayJob")["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:
        for container in pod["template"]["spec"]["containers"]:
            assert {"secretRef": {"name": "kdforge-s3"}} in container["envFrom"]
