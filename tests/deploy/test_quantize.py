"""``kdforge quantize``: int8 models measured against the float student, gated registration."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
import yaml

from kdforge.cli import main
from kdforge.config.quantize_settings import QuantizeSettings
from kdforge.export.quantize import (
    QUANTIZED_FILE,
    REPORT_FILE,
    quantize_search_dir,
    within_accuracy_drop,
)
from tests.deploy.conftest import MODEL_NAME, RegisteredStudent

pytestmark = pytest.mark.slow


@pytest.fixture
def search_copy(registered_student: RegisteredStudent, tmp_path):
    folder = tmp_path / "search"
    shutil.copytree(registered_student.search_dir, folder)
    return folder


def test_gate_on_accuracy_drop():
    assert within_accuracy_drop(0.90, 0.895, 0.01)
    assert within_accuracy_drop(0.90, 0.89, 0.01)  # exactly the allowed drop
    assert within_accuracy_drop(0.90, 0.95, 0.0)  # gains always pass
    assert not within_accuracy_drop(0.90, 0.8899, 0.01)
    assert not within_accuracy_drop(0.9194, 0.9166, 0.0)


def test_dynamic_quantization_is_measured_and_registered_within_the_drop(
    search_copy, registered_student
):
    from mlflow.tracking import MlflowClient

    settings = QuantizeSettings(mode="dynamic", max_accuracy_drop=0.05, latency_runs=20)
    report = quantize_search_dir(search_copy, settings, emit=lambda _: None)

    ops = {node.op_type for node in onnx.load(str(search_copy / QUANTIZED_FILE)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    assert json.loads((search_copy / REPORT_FILE).read_text()) == report
    for kind in ("float", "int8"):
        assert 0.8 < report[kind]["test_acc"] <= 1.0
        assert report[kind]["latency_ms_p50"] > 0 and report[kind]["rows_per_s"] > 0
    assert report["accuracy_drop"] == pytest.approx(
        report["float"]["test_acc"] - report["int8"]["test_acc"]
    )
    assert report["accepted"] is within_accuracy_drop(
        report["float"]["test_acc"], report["int8"]["test_acc"], 0.05
    )
    assert report["accepted"], "a 32-unit MLP should lose < 5 points with int8 weights"

    client = MlflowClient(registered_student.tracking_uri)
    int8 = client.get_model_version_by_alias(MODEL_NAME, "int8")
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(int8.version) == report["registered_model_version"] != str(champion.version)
    assert int8.tags["quantization"] == "int8-dynamic"
    assert int8.tags["source_version"] == str(champion.version)


def test_static_quantization_from_the_cli_with_config_section(
    search_copy, registered_student, capsys
):
    from mlflow.tracking import MlflowClient

    config = yaml.safe_load((search_copy / "config.yaml").read_text())
    config["quantize"] = {
        "mode": "static",
        "calibration_samples": 64,
        "max_accuracy_drop": 0.0,
        "alias": "int8-static",
        "latency_runs": 20,
    }
    (search_copy / "config.yaml").write_text(yaml.safe_dump(config))
    client = MlflowClient(registered_student.tracking_uri)
    before = len(client.search_model_versions(f"name='{MODEL_NAME}'"))

    assert main(["quantize", str(search_copy)]) == 0

    report = json.loads((search_copy / REPORT_FILE).read_text())
    assert report["mode"] == "static" and report["calibration_samples"] == 64
    ops = [node.op_type for node in onnx.load(str(search_copy / QUANTIZED_FILE)).graph.node]
    assert "QuantizeLinear" in ops  # activations are quantized too
    out = capsys.readouterr().out
    assert "int8 : test_acc=" in out and "accuracy drop" in out
    # max_accuracy_drop 0: registered exactly when int8 is not less accurate.
    accepted = report["int8"]["test_acc"] >= report["float"]["test_acc"]
    assert report["accepted"] is accepted
    after = len(client.search_model_versions(f"name='{MODEL_NAME}'"))
    assert after == before + int(accepted)
    assert ("not registered" in out) is (not accepted)


def test_no_register_and_mode_off(search_copy, registered_student, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(registered_student.tracking_uri)
    before = len(client.search_model_versions(f"name='{MODEL_NAME}'"))
    assert main(["quantize", str(search_copy), "--mode", "dynamic", "--no-register"]) == 0
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == before
    assert main(["quantize", str(search_copy)]) == 2  # config has no quantize section: off
    assert "quantize.mode is 'off'" in capsys.readouterr().err
    assert main(["quantize", str(search_copy / "missing")]) == 2


def test_post_search_step_is_a_no_op_when_off_or_not_onnx(search_copy):
    from kdforge.export.quantize import quantize_after_search

    assert quantize_after_search(search_copy, QuantizeSettings()) is None  # mode off
    summary = json.loads((search_copy / "summary.json").read_text())
    summary["export_path"] = str(search_copy / "student.pt2")
    (search_copy / "summary.json").write_text(json.dumps(summary))
    lines: list[str] = []
    assert (
        quantize_after_search(search_copy, QuantizeSettings(mode="dynamic"), emit=lines.append)
        is None
    )
    assert "skipped" in lines[0]
    assert not (search_copy / QUANTIZED_FILE).exists()
