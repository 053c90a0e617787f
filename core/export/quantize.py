"""Int8 quantization of a search's ONNX student, gated on the task's metric.

``kdforge quantize SEARCH_DIR`` (or the post-search step when ``quantize.mode`` is not
``off``) quantizes ``student.onnx`` with onnxruntime's tools:

* ``dynamic``: int8 weights; activations are quantized at run time (no data needed);
* ``static``: int8 weights and activations; activation scales are calibrated on
  ``calibration_samples`` training inputs from the search's dataset plugin.

Both models are measured side by side on the dataset's test split (the task's metric:
accuracy for classification, reported as ``test_acc``) and with onnxruntime on one
thread (single-row latency, batch throughput). The quantized model is registered as a
new version of the search's registered model, with tags naming its source version,
only if its metric drops by at most ``max_accuracy_drop`` (in the metric's direction).
The report is written to ``SEARCH_DIR/quantize.json``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from kdforge import progress
from kdforge.config import PluginRef, SearchConfig, resolve_tracking_uri, validate_config
from kdforge.config.quantize_settings import QuantizeSettings
from kdforge.data import TaskMetric
from kdforge.errors import ConfigError, ExportError
from kdforge.plugin_host.resolve import instantiate
from kdforge.tracking.registry import register_onnx
from kdforge.tracking.store import (
    has_active_run,
    log_numeric_metrics,
    log_params,
    open_run,
    setup_experiment,
)

# onnx and onnxruntime's quantization tools are imported inside the functions that
# quantize: a search imports this module, but quantizes only when quantize.mode asks.

__all__ = [
    "QUANTIZED_FILE",
    "REPORT_FILE",
    "calibration_inputs",
    "measure_models",
    "quantize_after_search",
    "quantize_onnx",
    "quantize_search_dir",
    "within_accuracy_drop",
]

QUANTIZED_FILE = "student.int8.onnx"
REPORT_FILE = "quantize.json"
_THROUGHPUT_BATCH = 256


def within_accuracy_drop(
    float_acc: float, int8_acc: float, max_drop: float, higher_is_better: bool = True
) -> bool:
    """Whether the quantized model's metric is close enough to register (gains always
    pass); ``higher_is_better`` is the metric's direction (accuracy: True)."""
    drop = float_acc - int8_acc if higher_is_better else int8_acc - float_acc
    # A tiny epsilon keeps "exactly max_drop points lower" on the accepted side despite
    # float rounding of accuracies like 0.9194444.
    return drop <= max_drop + 1e-9


def quantize_search_dir(
    search_dir: str | Path,
    settings: QuantizeSettings | None = None,
    *,
    tracking_uri: str | None = None,
    register: bool = True,
    emit: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Quantize a finished search's ``student.onnx``, compare it, maybe register it.

    Args:
        search_dir: A search folder (``config.yaml``, ``summary.json``, ``student.onnx``).
        settings: Overrides the ``quantize`` section of the search's config.
        tracking_uri: Overrides ``tracking.uri`` of the search's config.
        register: False measures and reports only.
        emit: Where progress lines go.

    Returns:
        The report (also written to ``search_dir/quantize.json``).

    Raises:
        ConfigError: not a search folder, or ``mode: off``.
        ExportError: onnxruntime could not quantize the model.
    """
    folder = Path(search_dir)
    config, raw_settings, summary = _read_search(folder)
    settings = settings or raw_settings
    if settings.mode == "off":
        raise ConfigError(
            "quantize.mode is 'off'",
            hint="pass --mode dynamic or --mode static, or set quantize.mode in the config",
        )
    source = Path(summary.get("export_path") or folder / "student.onnx")
    if source.suffix != ".onnx" or not source.exists():
        raise ConfigError(
            f"{folder} has no ONNX student ({source})",
            hint="quantization needs export.exporter: onnx",
        )

    raw_splits = instantiate("dataset", config.dataset, "dataset").load(config.dataset.split_seed)
    # The gate is on the task's metric: its targets prepared as the search prepared them
    # (regression: standardised on the same training rows), the models' outputs alike.
    task = instantiate("task", config.task or PluginRef(name=raw_splits.info.task), "task")
    task.check(raw_splits)
    splits = task.prepare(raw_splits)
    metric = task.selection_metric
    test_x = splits.test.x.numpy().astype(np.float32)
    test_y = splits.test.y

    def score(outputs: np.ndarray) -> float:
        prepared = task.prepare_outputs(torch.from_numpy(outputs).float())
        return task.metrics(prepared, test_y)[task.metric]

    target = folder / QUANTIZED_FILE
    emit(f"quantizing {source.name} ({settings.mode}) -> {target.name}")
    with progress.phase("quantization", total=2, unit="steps", emit=emit) as bar:
        calibration = calibration_inputs(splits, settings.calibration_samples, config.seed)
        quantize_onnx(source, target, settings.mode, calibration)
        bar.advance(note="measuring float and int8")
        measured = measure_models(
            {"float": source, "int8": target}, test_x, score, settings.latency_runs
        )
        bar.advance()
    report: dict[str, Any] = {
        "mode": settings.mode,
        "source": str(source),
        "quantized": str(target),
        "max_accuracy_drop": settings.max_accuracy_drop,
    }
    report.update(measured)
    if settings.mode == "static":
        report["calibration_samples"] = len(calibration)
    float_acc, int8_acc = report["float"]["test_acc"], report["int8"]["test_acc"]
    report["accuracy_drop"] = -metric.gain(int8_acc, float_acc)
    report["latency_speedup"] = report["float"]["latency_ms_p50"] / report["int8"]["latency_ms_p50"]
    report["throughput_ratio"] = report["int8"]["rows_per_s"] / report["float"]["rows_per_s"]
    report["size_ratio"] = report["float"]["size_bytes"] / report["int8"]["size_bytes"]
    accepted = within_accuracy_drop(
        float_acc, int8_acc, settings.max_accuracy_drop, metric.higher_is_better
    )
    report["accepted"] = accepted
    _print_report(report, emit)
    name = summary.get("registered_model_name")
    if accepted and register and name:
        uri = resolve_tracking_uri(tracking_uri or config.tracking.uri)
        report.update(
            _register(target, report, summary, settings, uri, config.tracking.experiment, test_x)
        )
        emit(
            f"registered {name} version {report['registered_model_version']}"
            + (f" as @{settings.alias}" if settings.alias else "")
        )
    elif not accepted:
        emit(
            f"not registered: accuracy drop {report['accuracy_drop'] * 100:.2f} points > "
            f"max_accuracy_drop {settings.max_accuracy_drop * 100:.2f}"
        )
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report


def quantize_after_search(
    search_dir: str | Path,
    settings: QuantizeSettings,
    *,
    tracking_uri: str | None = None,
    emit: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """The post-search step: quantize when ``settings.mode`` is not ``off``.

    Call it after ``summary.json`` is written (it reads the export path and the
    registered version from there), inside the search's MLflow run: the quantize run
    becomes a nested run.

    Returns:
        The report, or None when quantization is off or there is no ONNX student.
    """
    if settings.mode == "off":
        return None
    summary_file = Path(search_dir) / "summary.json"
    export_path = json.loads(summary_file.read_text()).get("export_path", "")
    if not str(export_path).endswith(".onnx"):
        emit("quantize: skipped, the search exported no ONNX student (export.exporter: onnx)")
        return None
    return quantize_search_dir(search_dir, settings, tracking_uri=tracking_uri, emit=emit)


def _read_search(folder: Path) -> tuple[Any, QuantizeSettings, dict[str, Any]]:

    config_file, summary_file = folder / "config.yaml", folder / "summary.json"
    for needed in (config_file, summary_file):
        if not needed.exists():
            raise ConfigError(
                f"{folder} is not a finished search folder: {needed.name} is missing",
                hint="pass output_dir/<name>/<timestamp> of a search that completed",
            )
    raw = yaml.safe_load(config_file.read_text()) or {}
    section = raw.pop("quantize", None) or {}
    settings = validate_config(section, QuantizeSettings, source=f"{config_file} quantize")
    if "quantize" in SearchConfig.model_fields:
        raw["quantize"] = section
    config = validate_config(raw, SearchConfig, source=str(config_file))
    return config, settings, json.loads(summary_file.read_text())


def calibration_inputs(splits: Any, samples: int, seed: int) -> np.ndarray:
    """A seeded sample of ``samples`` training inputs (unlabeled transfer rows included).

    Args:
        splits: The dataset plugin's :class:`~kdforge.data.DataSplits`.
        samples: How many rows (fewer if the pool is smaller).
        seed: Seed of the sample.
    """
    pools = [splits.train.x.numpy()]
    if splits.transfer is not None:
        pools.append(splits.transfer.x.numpy())
    pool = np.concatenate(pools).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(pool))[:samples]
    return pool[order]


def quantize_onnx(source: Path, target: Path, mode: str, calibration: np.ndarray | None) -> None:
    """Write the int8 quantization of ``source`` to ``target``.

    Args:
        source: The float ONNX model.
        target: Where to write the quantized model.
        mode: ``dynamic`` or ``static``.
        calibration: Inputs that calibrate activation ranges (``static`` only).

    Raises:
        ExportError: onnxruntime could not quantize the model.
    """
    if mode == "static" and calibration is None:
        raise ValueError("static quantization needs calibration inputs")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="kdforge-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # Shape inference + graph cleanup first, as onnxruntime's docs advise.
            quant_pre_process(str(source), str(prepared))
            if mode == "dynamic":
                quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
            elif calibration is not None:
                quantize_static(
                    str(prepared),
                    str(target),
                    _CalibrationReader(_input_name(source), calibration),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                )
        except Exception as exc:
            raise ExportError(
                f"onnxruntime could not quantize {source} ({mode}): {type(exc).__name__}: {exc}",
                hint="try the other quantize.mode, or quantize.mode: off",
            ) from exc


def _input_name(path: Path) -> str:
    import onnxruntime as ort

    return str(
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    )


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over an in-memory array."""

    def __init__(self, input_name: str, data: np.ndarray, batch: int = 32) -> None:
        self._batches = iter(
            [{input_name: data[i : i + batch]} for i in range(0, len(data), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def measure_models(
    paths: dict[str, Path],
    x: np.ndarray,
    y: np.ndarray | Callable[[np.ndarray], float],
    runs: int,
) -> dict[str, dict[str, Any]]:
    """Test score, single-row latency, batch throughput and size of ONNX models.

    The models run on one onnxruntime thread each and are timed interleaved (one call
    of each in turn), so drift in the machine's load affects them alike.

    Args:
        paths: Model name -> ``.onnx`` file.
        x: Test inputs (float32).
        y: Their class labels (the score is accuracy), or a function scoring a
            model's outputs on ``x`` by the task's metric (reported as ``test_acc``).
        runs: Timed single-row calls per model.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {
        key: ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"])
        for key, p in paths.items()
    }
    names = {key: session.get_inputs()[0].name for key, session in sessions.items()}
    out: dict[str, dict[str, Any]] = {}
    for key, session in sessions.items():
        logits = session.run(None, {names[key]: x})[0]
        value = y(logits) if callable(y) else float((logits.argmax(1) == y).mean())
        out[key] = {"test_acc": value}
        for _ in range(10):  # warm-up
            session.run(None, {names[key]: x[:1]})
    times: dict[str, list[float]] = {key: [] for key in sessions}
    for i in range(runs):
        one = x[i % len(x) : i % len(x) + 1]
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {names[key]: one})
            times[key].append((time.perf_counter() - start) * 1000)
    batch, repeats = x[:_THROUGHPUT_BATCH], 20
    elapsed = dict.fromkeys(sessions, 0.0)
    for _ in range(repeats):
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {names[key]: batch})
            elapsed[key] += time.perf_counter() - start
    for key, path in paths.items():
        ordered = sorted(times[key])
        out[key].update(
            {
                "latency_ms_p50": statistics.median(ordered),
                "latency_ms_p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
                "rows_per_s": repeats * len(batch) / elapsed[key],
                "size_bytes": _model_bytes(path),
            }
        )
    return out


def _model_bytes(path: Path) -> int:
    """Serialized size with external weight files included (the exporter may use them)."""
    import onnx

    return int(onnx.load(str(path), load_external_data=True).ByteSize())


def _register(
    target: Path,
    report: dict[str, Any],
    summary: dict[str, Any],
    settings: QuantizeSettings,
    tracking_uri: str,
    experiment: str,
    test_x: np.ndarray,
) -> dict[str, Any]:
    name = str(summary["registered_model_name"])
    metric = TaskMetric.of_summary(summary)  # tags name the task's metric, not "acc"
    tags = metric.named(
        {
            "quantization": f"int8-{settings.mode}",
            "source_version": str(summary.get("registered_model_version", "")),
            "student_test_acc": f"{report['int8']['test_acc']:.4f}",
            "float_test_acc": f"{report['float']['test_acc']:.4f}",
            "accuracy_drop": f"{report['accuracy_drop']:.4f}",
        },
        with_metric=False,
    )
    nested = has_active_run()  # inside a search's parent run, or on its own
    if not nested:
        setup_experiment(tracking_uri, experiment)
    with open_run(f"quantize-{settings.mode}", nested=nested):
        log_params(
            {
                "quantize.mode": settings.mode,
                "quantize.max_accuracy_drop": settings.max_accuracy_drop,
            }
        )
        log_numeric_metrics(
            {
                f"float_{metric.test}": report["float"]["test_acc"],
                f"int8_{metric.test}": report["int8"]["test_acc"],
                "float_latency_ms_p50": report["float"]["latency_ms_p50"],
                "int8_latency_ms_p50": report["int8"]["latency_ms_p50"],
                "latency_speedup": report["latency_speedup"],
            }
        )
        version = register_onnx(
            target, name=name, example=test_x[:4], alias=settings.alias, tags=tags
        )
    return {
        "registered_model_name": name,
        "registered_model_version": version,
        "registered_alias": settings.alias,
        "model_uri": f"models:/{name}@{settings.alias}"
        if settings.alias
        else f"models:/{name}/{version}",
    }


def _print_report(report: dict[str, Any], emit: Callable[[str], None]) -> None:
    for kind in ("float", "int8"):
        m = report[kind]
        emit(
            f"  {kind:5s}: test_acc={m['test_acc']:.4f}  latency p50={m['latency_ms_p50']:.3f} ms "
            f"p99={m['latency_ms_p99']:.3f} ms  batch {_THROUGHPUT_BATCH}: "
            f"{m['rows_per_s']:,.0f} rows/s  size={m['size_bytes']:,} B"
        )
    emit(
        f"  accuracy drop {report['accuracy_drop'] * 100:+.2f} points, "
        f"latency x{report['latency_speedup']:.2f}, throughput x{report['throughput_ratio']:.2f}, "
        f"size x{report['size_ratio']:.2f} smaller"
    )
