"""The description a registered student carries in the MLflow Model Registry.

Written from a search's summary: teacher and student metrics, compression, speed-up,
distillation gain, and where the student came from. MLflow shows descriptions as
Markdown on the model version page; the registered model's own description is set to
its champion's, so the model page tells which version serves and why.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kdforge.data import TaskMetric
from kdforge.wording import plural

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow (~1.5 s to import) is imported inside the functions that log: a search then
# imports it in the background while its data loads (kdforge.search.services).

__all__ = ["describe_registered_version", "model_description"]


def _num(value: Any, pattern: str = "{:.4f}") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return pattern.format(value)


def _speedup_spread(summary: dict[str, Any]) -> str:
    """``, middle half 3.4-3.9 of 15`` when the summary has the spread (newer searches)."""
    if "speedup_low" not in summary or "speedup_high" not in summary:
        return ""
    return (
        f", middle half {_num(summary['speedup_low'], '{:.1f}')}-"
        f"{_num(summary['speedup_high'], '{:.1f}')} of "
        f"{_num(summary.get('speedup_repeats'), '{:.0f}')}"
    )


def model_description(summary: dict[str, Any]) -> str:
    """A Markdown description of the student a search registered.

    Args:
        summary: The search summary (``summary.json`` content; a metric other than
            accuracy is read from its ``_acc`` keys and named after ``metric``).
    """
    metric = str(summary.get("metric", "acc"))
    metric_label = "accuracy" if metric == "acc" else metric
    lines = [
        f"Student distilled by kdforge {summary.get('kdforge_version', '')} from teacher "
        f"`{summary.get('teacher', '?')}` on dataset `{summary.get('dataset', '?')}` "
        f"(search `{summary.get('search', '?')}`, "
        f"trial {_num(summary.get('best_trial'), '{:03d}')}).",
        "",
        "| | teacher | student |",
        "|---|---|---|",
        f"| test {metric_label} | {_num(summary.get('teacher_test_acc'))} | "
        f"{_num(summary.get('student_test_acc'))} |",
        f"| validation {metric_label} | {_num(summary.get('teacher_val_acc'))} | "
        f"{_num(summary.get('student_val_acc'))} |",
        f"| parameters | {_num(summary.get('teacher_params'), '{:,}')} | "
        f"{_num(summary.get('student_params'), '{:,}')} |",
    ]
    if "teacher_batch_ms" in summary:
        lines.append(
            f"| time per batch of {_num(summary.get('speedup_batch_size'), '{:.0f}')} (ms) | "
            f"{_num(summary.get('teacher_batch_ms'), '{:.3f}')} | "
            f"{_num(summary.get('student_batch_ms'), '{:.3f}')} |"
        )
    lines.append("")
    lines.append(
        f"- compression: {_num(summary.get('compression_ratio'), '{:.1f}')}x fewer parameters"
    )
    if "speedup" in summary:
        lines.append(
            f"- speed-up: {_num(summary.get('speedup'), '{:.1f}')}x (same batch in PyTorch: "
            "the teacher's predict against the student on the CPU, median of repeated "
            f"paired timings{_speedup_spread(summary)})"
        )
    if "student_latency_ms" in summary:
        lines.append(
            f"- student ONNX latency: {_num(summary['student_latency_ms'], '{:.3f}')} ms "
            "at batch 1 (onnxruntime, CPU)"
        )
    if "distillation_gain" in summary:
        seeds = len(summary.get("scratch_test_acc_runs") or [])
        lines.append(
            f"- distillation gain: {_gain(summary)} in test {TaskMetric.of_summary(summary).name} "
            f"(same architecture, {plural(seeds, 'seed')} each: distilled "
            f"{_num(summary.get('distilled_test_acc_mean'))} vs from scratch "
            f"{_num(summary.get('scratch_test_acc_mean'))}, both with the chosen trial's "
            f"lr {_num(summary.get('best_lr'), '{:.3g}')})"
        )
    lines.append(f"- architecture: `{summary.get('best_arch', {})}`")
    lines.append(
        f"- loss hyperparameters: `{summary.get('best_loss_hparams', {})}`, "
        f"lr {_num(summary.get('best_lr'), '{:.3g}')}"
    )
    if summary.get("parent_run_id"):
        lines.append(f"- search run: `{summary['parent_run_id']}`")
    return "\n".join(lines)


def describe_registered_version(
    name: str,
    version: str,
    summary: dict[str, Any],
    *,
    alias: str | None,
    client: MlflowClient | None = None,
) -> str:
    """Set the version's description, and the model's when ``alias`` points at it.

    Args:
        name: Registered model name.
        version: The version the search registered.
        summary: The search summary.
        alias: The alias now on this version (e.g. ``champion``), or None.
        client: An MLflow client (default: one for the current tracking URI).

    Returns:
        The description written.
    """
    if client is None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
    text = model_description(summary)
    client.update_model_version(name, str(version), description=text)
    if alias:
        client.update_registered_model(name, description=f"@{alias}: version {version}.\n\n{text}")
    return text


def _gain(summary: dict[str, Any]) -> str:
    gain = summary.get("distillation_gain")
    if not isinstance(gain, int | float) or math.isnan(gain):
        return "-"
    return TaskMetric.of_summary(summary).gain_text(float(gain))
