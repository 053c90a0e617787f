"""After the trials: the chosen student, its export, its registration and the result block.

The driver (:mod:`kdforge.search.driver`) loads the chosen trial's student once and
hands it to these steps:

* :func:`student_summary` and :func:`save_student`: its accuracy and size against the
  teacher's, and ``student.pt`` (a kdforge checkpoint);
* :func:`export_and_register`: the exporter plugin writes it (parity-checked against
  PyTorch), its ONNX Runtime latency is measured, it becomes a new version of the
  registered model, and ``export.promote`` decides whether the alias moves to it;
  a language-model student is also saved as a Hugging Face model folder
  (``student_hf/``) and registered as ``<name>-text`` in the ``transformers`` flavour
  (generated text or fill-mask predictions when served), under the same alias;
* :func:`print_result`: the ``== result ==`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdforge import progress
from kdforge.checkpoint import save_checkpoint
from kdforge.config import SearchConfig
from kdforge.data import ACCURACY, DataInfo, Split, TaskMetric
from kdforge.errors import ExportError
from kdforge.export.hf_folder import HF_FOLDER, hf_lm_mode, is_hf_lm_student, save_hf_folder
from kdforge.export.student import (
    check_inputs,
    export_student,
    rename_onnx_output,
    weight_files,
)
from kdforge.interfaces import Exporter, SearchSpace, Task
from kdforge.objectives.costs import measure_onnx_latency_with
from kdforge.plugin_host.split_record import ref_record, split_tag
from kdforge.report.leaderboard import TrialRow
from kdforge.report.render import baseline_setting
from kdforge.tracking.hf_model import register_transformers_model
from kdforge.tracking.promote import promote_version
from kdforge.tracking.registry import drop_interrupted_versions, register_onnx
from kdforge.tracking.store import log_files, log_folder, log_numeric_metrics
from kdforge.tracking.text_model import register_text_model
from kdforge.training.evaluate import count_parameters, evaluate
from kdforge.wording import plural, trial_name

__all__ = [
    "describe_rows",
    "export_and_register",
    "print_result",
    "save_student",
    "student_summary",
]


def describe_rows(space: SearchSpace, rows: list[TrialRow]) -> None:
    """Set each row's ``arch_text`` to the space's short description of its architecture.

    A third-party space whose ``describe`` fails keeps the compact rendering of the
    sampled values (:attr:`TrialRow.architecture`): a label must not lose a search.
    """
    for row in rows:
        if not row.arch:
            continue
        try:
            row.arch_text = str(space.describe(dict(row.arch)))
        except Exception:
            row.arch_text = ""


def student_summary(
    config: SearchConfig,
    search_dir: Path,
    best: TrialRow,
    student: nn.Module,
    test: Split,
    teacher_params: int,
    teacher_acc: Mapping[str, float],
    teacher_forward_calls: int,
    task: Task | None = None,
) -> dict[str, Any]:
    """The chosen student against the teacher: the task's metric, size, compression."""
    student_params = count_parameters(student)
    student_test, _ = evaluate(student, test.x, test.y, task)
    return {
        "search": config.name,
        "search_dir": str(search_dir),
        "teacher_test_acc": teacher_acc["test"],
        "teacher_val_acc": teacher_acc["val"],
        "teacher_held_out": config.teacher.held_out,
        "teacher_reference_acc": teacher_acc[config.teacher.held_out],
        "teacher_params": teacher_params,
        "student_test_acc": student_test,
        "student_val_acc": best.val_acc,
        "student_params": student_params,
        "compression_ratio": teacher_params / max(student_params, 1),
        "best_trial": best.number,
        "best_arch": best.arch,
        "best_arch_text": best.architecture,
        "best_loss_hparams": best.loss_hparams,
        "best_lr": best.lr,
        "selection_rule": config.selection.rule,
        "student_macs": best.macs,
        "student_size_bytes": best.size_bytes,
        "teacher_forward_calls": teacher_forward_calls,
    }


def save_student(
    search_dir: Path,
    space_name: str,
    best: TrialRow,
    info: DataInfo,
    student: nn.Module,
    test_acc: float,
    task: Task | None = None,
) -> Path:
    """Write ``student.pt``, a kdforge checkpoint that rebuilds the student by name.

    With a ``task``, the checkpoint records it, so that the rebuilt student ends with
    the task's output head (predictions in the data's units).

    It is logged to the active (parent) run too, so ``kdforge.load_student`` finds it
    from the registered model's URI.
    """
    path = save_checkpoint(
        search_dir / "student.pt",
        space=space_name,
        arch=best.arch,
        info=info,
        model=student,
        meta={"test_acc": test_acc, "trial": best.number},
        task=task.record() if task is not None else None,
    )
    log_files(path)
    return path


def export_and_register(
    config: SearchConfig,
    exporter: Exporter,
    student: nn.Module,
    test: Split,
    summary: Mapping[str, Any],
    search_dir: Path,
    emit: Callable[[str], None],
    info: DataInfo | None = None,
    task: Task | None = None,
) -> dict[str, Any]:
    """Export, check, time, register and offer the student to the alias.

    A language-model student (:func:`~kdforge.export.hf_folder.is_hf_lm_student`) is
    first written as a Hugging Face model folder, ``search_dir/student_hf``, and logged
    under ``student_hf/``; after the ONNX steps it is registered as ``<name>-text`` in
    the ``transformers`` flavour (:func:`_register_hf_lm`). Its ONNX export is kept
    when it works; when the exporter refuses it, the transformers version is registered
    alone.

    Args:
        config: The search config (``export``, ``latency`` and the registered name).
        exporter: The exporter plugin.
        student: The chosen student (eval mode, CPU).
        test: The test split (check inputs, and the ``if_better`` comparison).
        summary: The result so far (its accuracies become model-version tags).
        search_dir: The search folder.
        emit: Where progress lines go.
        info: The data description: token ids made by a local tokenizer also register
            ``<name>-text``, the student with its tokenizer and class names, which takes
            raw text (:mod:`kdforge.tracking.text_model`); not for a language model,
            whose ``<name>-text`` is its transformers version.
        task: The task: the parity tolerance is in the units the student trained in
            and the exported model answers in the data's (``Task.output_scale``), its
            output is named ``Task.output_name``, and ``if_better`` compares by its
            metric (``test`` is in the form its ``prepare`` gave).

    Returns:
        Entries for ``summary.json`` (export path and parity; with ONNX also latency,
        the registered version, the alias and the promotion; ``text_model_uri`` for a
        raw-text model or a language model, ``hf_folder`` for a language model).
    """
    out: dict[str, Any] = {}
    hf_dir = None
    mode = ""
    if is_hf_lm_student(student):
        mode = hf_lm_mode(student)
        hf_dir = save_hf_folder(student, search_dir / HF_FOLDER)
        log_folder(hf_dir, under=HF_FOLDER)
        emit(f"saved the {mode} language model as a Hugging Face folder: {hf_dir}")
        out["hf_folder"] = str(hf_dir)
    inputs = check_inputs(test.x)
    try:
        with progress.phase("export", emit=emit):
            result = export_student(
                exporter,
                student,
                inputs,
                search_dir,
                config.export.tolerance * (task.output_scale() if task is not None else 1.0),
                emit,
            )
    except ExportError as exc:
        if hf_dir is None:
            raise
        # The Hugging Face folder is the language model's deliverable; ONNX is a bonus.
        emit(f"no ONNX model: {exc}; the student is registered in the transformers flavour")
        out["onnx_refused"] = str(exc)
        out.update(_register_hf_lm(hf_dir, mode, config, summary, None, emit))
        return out
    log_numeric_metrics({"export_max_abs_diff": result.max_abs_diff})
    log_files(*weight_files(result.path))
    out.update(
        {
            "export_path": str(result.path),
            "export_max_abs_diff": result.max_abs_diff,
        }
    )
    if result.format != "onnx":
        if hf_dir is not None:
            out.update(_register_hf_lm(hf_dir, mode, config, summary, None, emit))
        return out  # other formats are run artifacts; the registry holds ONNX models
    rename_onnx_output(result.path, task.output_name if task is not None else "logits")
    with progress.phase("latency", emit=emit):
        out.update(_student_latency(result.path, inputs, config, emit))
    name = config.registered_model_name
    for orphan in drop_interrupted_versions(name):
        emit(f"removed {name} version {orphan}, left by a registration a kill interrupted")
    version = register_onnx(
        result.path,
        name=name,
        example=inputs[:4].numpy(),
        tags={**_version_tags(summary), "kdforge.split": split_tag(ref_record(config.dataset))},
    )
    # export.promote: 'always' moves the alias; 'if_better' compares on the test split.
    promotion = promote_version(
        name,
        version,
        alias=config.export.alias,
        policy=config.export.promote,
        test=test,
        test_split=ref_record(config.dataset),
        task=task,
    )
    emit(promotion.line())
    out.update(
        {
            "registered_model_name": name,
            "registered_model_version": version,
            "registered_alias": config.export.alias if promotion.promoted else None,
            "model_uri": f"models:/{name}@{config.export.alias}"
            if promotion.promoted
            else f"models:/{name}/{version}",
            "promotion": promotion.as_dict(),
        }
    )
    if hf_dir is None and info is not None and info.tokenizer and info.class_names:
        out.update(_register_text(result.path, info, name, summary, out, config.export.alias, emit))
    if hf_dir is not None:
        out.update(_register_hf_lm(hf_dir, mode, config, summary, out, emit))
    return out


def _register_hf_lm(
    folder: Path,
    mode: str,
    config: SearchConfig,
    summary: Mapping[str, Any],
    registered: Mapping[str, Any] | None,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Register the LM student's folder as ``<name>-text`` (``transformers`` flavour).

    With an ONNX version (``registered``), the alias follows its promotion, as the
    raw-text classifier's does. Without one there is nothing to compare: the alias
    moves under ``export.promote: always`` and stays where it is under ``if_better``.
    """
    name = f"{config.registered_model_name}-text"
    alias = config.export.alias
    if registered is not None:
        promoted = registered.get("registered_alias") is not None
        extra = {"onnx_version": str(registered["registered_model_version"])}
    else:
        promoted = config.export.promote == "always"
        extra = {}
        if not promoted:
            emit(
                f"{name}: no ONNX version to compare under export.promote: if_better; "
                f"alias {alias} not moved"
            )
    for orphan in drop_interrupted_versions(name):
        emit(f"removed {name} version {orphan}, left by a registration a kill interrupted")
    version = register_transformers_model(
        folder,
        mode,
        name,
        tags={**_version_tags(summary), **extra, "kdforge.lm_mode": mode},
        alias=alias if promoted else None,
    )
    uri = f"models:/{name}@{alias}" if promoted else f"models:/{name}/{version}"
    served = "generated text" if mode == "causal" else "fill-mask predictions"
    emit(
        f"registered {name} version {version} (transformers flavour): text in, {served} out ({uri})"
    )
    return {"text_model_name": name, "text_model_version": version, "text_model_uri": uri}


def _register_text(
    onnx_path: Path,
    info: DataInfo,
    name: str,
    summary: Mapping[str, Any],
    registered: Mapping[str, Any],
    alias: str,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Register ``<name>-text`` (raw text in, class names out); same alias as the student."""
    assert info.tokenizer is not None and info.class_names is not None
    text_name = f"{name}-text"
    promoted = registered.get("registered_alias") is not None
    version = register_text_model(
        onnx_path,
        info.tokenizer,
        info.input_shape[0],
        info.class_names,
        text_name,
        tags={
            **_version_tags(summary),
            "onnx_version": str(registered["registered_model_version"]),
        },
        alias=alias if promoted else None,
    )
    uri = f"models:/{text_name}@{alias}" if promoted else f"models:/{text_name}/{version}"
    emit(f"registered {text_name} version {version}: raw text in, class names out ({uri})")
    return {"text_model_name": text_name, "text_model_version": version, "text_model_uri": uri}


def _version_tags(summary: Mapping[str, Any]) -> dict[str, str]:
    """The model-version tags that say what the registered student achieved (the
    task's metric named as in ``summary.json``: ``student_test_r2``)."""
    tags = {
        "teacher_test_acc": f"{summary['teacher_test_acc']:.4f}",
        "student_test_acc": f"{summary['student_test_acc']:.4f}",
        "compression_ratio": f"{summary['compression_ratio']:.2f}",
        "student_params": str(summary["student_params"]),
        "teacher_params": str(summary["teacher_params"]),
    }
    if "distillation_gain" in summary:
        tags["distillation_gain"] = f"{summary['distillation_gain']:.4f}"
    return TaskMetric.of_summary(summary).named(tags, with_metric=False)


def _student_latency(
    path: Path, inputs: torch.Tensor, config: SearchConfig, emit: Callable[[str], None]
) -> dict[str, float]:
    """onnxruntime CPU latency of the exported student (``latency`` settings)."""
    settings = config.latency
    result = measure_onnx_latency_with(path, inputs, settings)
    values = {
        "student_latency_ms": result.latency_ms,
        "student_latency_batch_ms": result.latency_batch_ms,
        "student_onnx_bytes": float(result.onnx_bytes),
    }
    log_numeric_metrics(values)
    emit(
        f"latency (onnxruntime CPU, {plural(settings.threads, 'thread')}, median of "
        f"{settings.repeats}): "
        f"{result.latency_ms:.3f} ms at batch 1, {result.latency_batch_ms:.3f} ms at batch "
        f"{settings.batch_size}"
    )
    return values


def print_result(
    summary: Mapping[str, Any], emit: Callable[[str], None], metric: TaskMetric = ACCURACY
) -> None:
    """Print the ``== result ==`` block: teacher, student, compression, gain."""
    emit("")
    emit("== result ==")
    emit(
        f"teacher: {metric.test}={summary['teacher_test_acc']:.4f}  "
        f"params={summary['teacher_params']:,}"
    )
    arch = summary.get("best_arch_text") or summary["best_arch"]
    emit(
        f"student: {metric.test}={summary['student_test_acc']:.4f}  "
        f"params={summary['student_params']:,}  ({trial_name(summary['best_trial'])}, {arch})"
    )
    emit(f"compression: {summary['compression_ratio']:.1f}x fewer parameters")
    if "distillation_gain" in summary:
        seeds = plural(len(summary["scratch_test_acc_runs"]), "seed")
        emit(
            f"same architecture, {seeds} each: distilled "
            f"{summary['distilled_test_acc_mean']:.4f} ± {summary['distilled_test_acc_std']:.4f}, "
            f"from scratch {summary['scratch_test_acc_mean']:.4f} ± "
            f"{summary['scratch_test_acc_std']:.4f} -> distillation gain "
            f"{metric.gain_text(summary['distillation_gain'])}"
        )
        emit(f"  ({baseline_setting(summary.get('best_lr'))})")
