"""After the trials: distillation gain, export, parity check, registry.

The distillation gain trains the chosen architecture again with ``baseline.seeds``
seeds twice, once distilled with the chosen hyperparameters and once from scratch
(labels only, same epochs, learning rate and batch size), as Ray tasks, and reports
the difference of mean test accuracies.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kdforge.data import DataSplits
from kdforge.errors import ExportError
from kdforge.report.leaderboard import TrialRow
from kdforge.search.driver import SearchPlan, build_payload
from kdforge.search.trial import STATE_FILE, TrialPayload, count_parameters, trial_device
from kdforge.teacher.outputs import TeacherOutputs
from kdforge.training.trainer import TrainSettings, evaluate, train_model

__all__ = ["check_parity", "finalize", "train_fixed"]


def train_fixed(
    payload: TrialPayload,
    arch: dict[str, Any],
    loss_hparams: dict[str, float],
    lr: float,
    seed: int,
    distill: bool,
) -> float:
    """Train one fixed architecture and return its test accuracy."""
    torch.set_num_threads(max(1, payload.threads))
    torch.manual_seed(seed)
    if not distill:
        # From scratch means no teacher knowledge at all, teacher-layer init included.
        arch = {**arch, "init_from_teacher": False}
    model = payload.space.build(arch, payload.info)
    loss = payload.loss_cls(payload.loss_params, loss_hparams) if distill else None
    train_model(
        model,
        x=payload.train_x,
        y=payload.train_y,
        val_x=payload.val_x,
        val_y=payload.val_y,
        settings=TrainSettings(
            epochs=payload.epochs,
            lr=lr,
            batch_size=payload.batch_size,
            weight_decay=payload.weight_decay,
            seed=seed,
            device=trial_device(payload.gpus),
            precision=payload.precision,
        ),
        loss=loss,
        teacher_logits=payload.teacher_train_logits if distill else None,
        teacher_features=payload.teacher_train_features if distill else None,
        online_teacher=payload.online_teacher if distill else None,
    )
    acc, _ = evaluate(model, payload.test_x, payload.test_y)
    return acc


def _baseline(
    payload: TrialPayload, best: TrialRow, seeds: int, cpus: float
) -> dict[str, list[float]]:
    import ray

    remote = ray.remote(num_cpus=cpus, num_gpus=payload.gpus)(train_fixed)
    ref = ray.put(payload)
    assert best.lr is not None
    futures = {
        kind: [
            remote.remote(ref, best.arch, best.loss_hparams, best.lr, 1000 + s, kind == "distilled")
            for s in range(seeds)
        ]
        for kind in ("distilled", "scratch")
    }
    return {kind: [float(v) for v in ray.get(refs)] for kind, refs in futures.items()}


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread


def finalize(
    plan: SearchPlan,
    splits: DataSplits,
    outputs: TeacherOutputs,
    teacher_acc: dict[str, float],
    best: TrialRow,
    rows: list[TrialRow],
    search_dir: Path,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Baseline, export and registration of ``best``; returns the summary dict."""
    import mlflow

    config = plan.config
    model = plan.space.build(best.arch, splits.info)
    assert best.checkpoint is not None
    state = torch.load(Path(best.checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    student_params = count_parameters(model)
    teacher_params = plan.teacher.num_parameters()
    student_test, _ = evaluate(model, splits.test.x, splits.test.y)
    summary: dict[str, Any] = {
        "search": config.name,
        "search_dir": str(search_dir),
        "teacher_test_acc": teacher_acc["test"],
        "teacher_val_acc": teacher_acc["val"],
        "teacher_params": teacher_params,
        "student_test_acc": student_test,
        "student_val_acc": best.val_acc,
        "student_params": student_params,
        "compression_ratio": teacher_params / max(student_params, 1),
        "best_trial": best.number,
        "best_arch": best.arch,
        "best_loss_hparams": best.loss_hparams,
        "best_lr": best.lr,
        "selection_rule": config.selection.rule,
        "student_macs": best.macs,
        "student_size_bytes": best.size_bytes,
        "teacher_forward_calls": outputs.forward_calls,
    }
    from kdforge.checkpoint import save_checkpoint

    save_checkpoint(
        search_dir / "student.pt",
        space=config.student.name,
        arch=best.arch,
        info=splits.info,
        model=model,
        meta={"test_acc": student_test, "trial": best.number},
    )
    if config.baseline.enabled:
        emit(
            f"distillation gain: training trial {best.number:03d}'s architecture with "
            f"{config.baseline.seeds} seeds, distilled and from scratch ..."
        )
        payload = build_payload(plan, splits, outputs)
        runs = _baseline(payload, best, config.baseline.seeds, config.search.cpus_per_trial)
        distilled_mean, distilled_sd = _stats(runs["distilled"])
        scratch_mean, scratch_sd = _stats(runs["scratch"])
        summary.update(
            {
                "distilled_test_acc_runs": runs["distilled"],
                "scratch_test_acc_runs": runs["scratch"],
                "distilled_test_acc_mean": distilled_mean,
                "distilled_test_acc_std": distilled_sd,
                "scratch_test_acc_mean": scratch_mean,
                "scratch_test_acc_std": scratch_sd,
                "distillation_gain": distilled_mean - scratch_mean,
            }
        )
    mlflow.log_metrics(
        {
            k: float(v)
            for k, v in summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    if plan.exporter is not None:
        summary.update(_export_and_register(plan, model, splits, summary, search_dir, emit))
    _print_summary(summary, emit)
    return summary


def _export_and_register(
    plan: SearchPlan,
    model: torch.nn.Module,
    splits: DataSplits,
    summary: dict[str, Any],
    search_dir: Path,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    import mlflow
    import onnx
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    config = plan.config
    assert plan.exporter is not None
    target = search_dir / f"student{plan.exporter.suffix}"
    check_inputs = splits.test.x[:256]
    if check_inputs.is_floating_point():  # token ids stay integers
        check_inputs = check_inputs.float()
    result = plan.exporter.export(model, check_inputs, target)
    emit(f"exported {target.name}: max |onnxruntime - torch| = {result.max_abs_diff:.2e}")
    check_parity(result.max_abs_diff, config.export.tolerance, target)
    mlflow.log_metric("export_max_abs_diff", result.max_abs_diff)
    mlflow.log_artifact(str(target))
    external = target.with_name(target.name + ".data")  # weights the exporter kept apart
    if external.exists():
        mlflow.log_artifact(str(external))
    out: dict[str, Any] = {"export_path": str(target), "export_max_abs_diff": result.max_abs_diff}
    if result.format != "onnx":
        return out
    out.update(_student_latency(target, check_inputs, config, emit))
    example = check_inputs[:4].numpy()
    with torch.no_grad():
        prediction = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, prediction)
    name = config.registered_model_name
    info = mlflow.onnx.log_model(
        onnx.load(str(target)),
        name="student",
        signature=signature,
        input_example=example,
        registered_model_name=name,
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    tags = {
        "teacher_test_acc": f"{summary['teacher_test_acc']:.4f}",
        "student_test_acc": f"{summary['student_test_acc']:.4f}",
        "compression_ratio": f"{summary['compression_ratio']:.2f}",
        "student_params": str(summary["student_params"]),
        "teacher_params": str(summary["teacher_params"]),
    }
    if "distillation_gain" in summary:
        tags["distillation_gain"] = f"{summary['distillation_gain']:.4f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    from kdforge.tracking.promote import promote_version

    # export.promote: 'always' moves the alias; 'if_better' compares on the test split.
    promotion = promote_version(
        name,
        version,
        alias=config.export.alias,
        policy=config.export.promote,
        test=splits.test,
        client=client,
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
    return out


def _student_latency(
    path: Path, inputs: torch.Tensor, config: Any, emit: Callable[[str], None]
) -> dict[str, float]:
    """onnxruntime CPU latency of the exported student (``latency`` settings)."""
    import mlflow

    from kdforge.objectives.costs import measure_onnx_latency

    settings = config.latency
    result = measure_onnx_latency(
        path,
        inputs,
        batch_size=settings.batch_size,
        repeats=settings.repeats,
        warmup=settings.warmup,
        threads=settings.threads,
    )
    values = {
        "student_latency_ms": result.latency_ms,
        "student_latency_batch_ms": result.latency_batch_ms,
        "student_onnx_bytes": float(result.onnx_bytes),
    }
    mlflow.log_metrics(values)
    emit(
        f"latency (onnxruntime CPU, {settings.threads} thread(s), median of {settings.repeats}): "
        f"{result.latency_ms:.3f} ms at batch 1, {result.latency_batch_ms:.3f} ms at batch "
        f"{settings.batch_size}"
    )
    return values


def check_parity(max_abs_diff: float, tolerance: float, path: Path) -> None:
    """Raise ExportError when the exported model strays from PyTorch beyond tolerance."""
    if not max_abs_diff <= tolerance:  # also catches NaN
        raise ExportError(
            f"exported model {path.name} disagrees with PyTorch: max abs difference "
            f"{max_abs_diff:.3g} > export.tolerance {tolerance:g}",
            hint="raise export.tolerance if this precision is acceptable",
        )


def _print_summary(summary: dict[str, Any], emit: Callable[[str], None]) -> None:
    emit("")
    emit("== result ==")
    emit(
        f"teacher: test_acc={summary['teacher_test_acc']:.4f}  params={summary['teacher_params']:,}"
    )
    emit(
        f"student: test_acc={summary['student_test_acc']:.4f}  params={summary['student_params']:,}"
        f"  (trial {summary['best_trial']:03d}, {summary['best_arch']})"
    )
    emit(f"compression: {summary['compression_ratio']:.1f}x fewer parameters")
    if "distillation_gain" in summary:
        emit(
            f"same architecture, {len(summary['scratch_test_acc_runs'])} seeds: distilled "
            f"{summary['distilled_test_acc_mean']:.4f} ± {summary['distilled_test_acc_std']:.4f}, "
            f"from scratch {summary['scratch_test_acc_mean']:.4f} ± "
            f"{summary['scratch_test_acc_std']:.4f} -> distillation gain "
            f"{summary['distillation_gain'] * 100:+.2f} points"
        )
