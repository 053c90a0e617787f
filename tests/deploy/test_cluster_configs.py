"""The Ray cluster-launcher YAML and the KubeRay RayJob agree with the package."""

from __future__ import annotations

import re
import shlex
from importlib.metadata import version
from pathlib import Path

import yaml

from kdforge.cli import build_parser
from kdforge.config import SearchConfig, TeacherConfig, load_search_config, validate_config
from kdforge.plugin_host.manager import get_registry

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = f"kdforge-cluster:{version('kdforge')}"


def _ray_version() -> str:
    return version("ray")


def _check_kdforge_command(command: str) -> None:
    for part in command.split("&&"):
        argv = shlex.split(part.strip())
        assert argv[0] == "kdforge", argv
        args = build_parser().parse_args(argv[1:])  # exits (SystemExit) on a bad command
        assert args.command in {"search", "train-teacher"}


def test_cluster_image_matches_package_and_ray() -> None:
    dockerfile = (DEPLOY / "cluster.Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)", dockerfile, re.M)
    assert base and base.group(1).startswith(_ray_version() + "-py311")
    assert f"-t {IMAGE}" in dockerfile
    for folder in ("core", "plugins", "search_spaces"):
        assert f"COPY --chown=ray:users {folder} {folder}" in dockerfile


def test_cluster_launcher_config() -> None:
    cluster = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    assert cluster["docker"]["image"] == IMAGE
    types = cluster["available_node_types"]
    assert cluster["head_node_type"] in types
    gpu_nodes = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    assert gpu_nodes, "no GPU worker type"
    head_port = re.search(r"--port=(\d+)", " ".join(cluster["head_start_ray_commands"]))
    worker = " ".join(cluster["worker_start_ray_commands"])
    assert head_port and f":{head_port.group(1)}" in worker
    example = load_search_config(ROOT / "examples" / "cluster" / "search.yaml")
    assert example.search.gpus_per_trial <= min(t["resources"]["GPU"] for t in gpu_nodes)
    assert example.search.cpus_per_trial <= min(t["resources"]["CPU"] for t in gpu_nodes)


def test_kuberay_rayjob() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kuberay-rayjob.yaml").read_text()))
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    job = next(d for d in docs if d["kind"] == "RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == _ray_version()
    _check_kdforge_command(job["spec"]["entrypoint"])

    search = validate_config(yaml.safe_load(config_map["data"]["search.yaml"]), SearchConfig)
    registry = get_registry()
    registry.get("dataset", search.dataset.name)
    registry.get("search_space", search.student.name)
    mount = next(
        m
        for m in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["name"] == "search-config"
    )
    assert f"{mount['mountPath']}/search.yaml" in job["spec"]["entrypoint"]
    teacher_file = re.search(r"train-teacher (\S+)", job["spec"]["entrypoint"]).group(1)
    teacher = TeacherConfig.model_validate(
        yaml.safe_load((ROOT / teacher_file.removeprefix("/opt/kdforge/")).read_text())
    )
    assert teacher.output == search.teacher.params["path"]

    containers = [cluster["headGroupSpec"]["template"]["spec"]["containers"][0]]
    for group in cluster["workerGroupSpecs"]:
        containers += group["template"]["spec"]["containers"]
    assert {c["image"] for c in containers} == {IMAGE}
    gpus = [int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for c in containers]
    assert max(gpus) >= 1 and search.search.gpus_per_trial <= max(gpus)
