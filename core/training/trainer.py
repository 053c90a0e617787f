"""The training loop of one model (a student, or a teacher being trained).

Batches come from :func:`kdforge.batching.iter_batches`: in-memory inputs are indexed
with a seeded permutation, streamed inputs (:class:`~kdforge.data.LazyInputs`) go
through a DataLoader whose workers read the rows; both give the same batches for the
same seed. AdamW (fused where torch has the kernel) with a cosine learning-rate
schedule over the full epoch budget; the weights of the best validation epoch are
kept. A non-finite loss stops training with :class:`TrainingDiverged`. Given a
:class:`~kdforge.training.distributed.DataParallel`, the process is one worker of a
data-parallel run: it trains on its share of every global batch
(:mod:`kdforge.training.distributed`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kdforge.batching import iter_batches, take, to_device
from kdforge.data import UNLABELED, Inputs, TopKLogits, VocabularyTrim
from kdforge.errors import ConfigError, PluginError
from kdforge.features import FeatureTap, forward_tapped, student_tap, teacher_rows
from kdforge.interfaces import LossStrategy, ModelOutput, Task
from kdforge.training import distributed
from kdforge.training.distributed import DataParallel
from kdforge.training.evaluate import evaluate

__all__ = [
    "EpochReport",
    "TrainResult",
    "TrainSettings",
    "TrainingDiverged",
    "make_optimizer",
    "train_model",
]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def _divergence_reason(
    value: float,
    epoch: int,
    step: int,
    lr: float,
    batch: torch.Tensor,
    logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    idx: torch.Tensor,
) -> str:
    """Why the loss is not finite, with the hint that fits the cause.

    Non-finite inputs or teacher outputs are the data's fault; a non-finite loss on
    finite outputs before any update is the loss's own; only a loss that breaks after
    training went on is divergence, which a lower learning rate fixes.
    """
    where = f"training loss became {value} at epoch {epoch}, step {step + 1}"
    if batch.is_floating_point() and not bool(torch.isfinite(batch).all()):
        return f"{where}: the batch's inputs contain NaN or inf; clean the dataset"
    if teacher_logits is not None and len(teacher_logits) > 0:  # empty: online teacher
        rows = teacher_logits[idx.to(teacher_logits.device)]
        # Per-position top-k teacher logits (a teacher_cache.top_k entry) come sparse.
        finite = (
            rows.is_finite()
            if isinstance(rows, TopKLogits)
            else not rows.is_floating_point() or bool(torch.isfinite(rows).all())
        )
        if not finite:
            return f"{where}: the teacher's outputs contain NaN or inf; check the teacher"
    if not bool(torch.isfinite(logits.detach()).all()):
        if step == 0:
            return f"{where}: the untrained student's outputs are not finite; check the model"
        return (
            f"{where} (lr={lr:.3g}): the student's outputs diverged; "
            "lower the learning-rate range (search.lr)"
        )
    if step == 0:
        return (
            f"{where}, before any update, on finite inputs and outputs: the loss itself "
            "returns NaN/inf (check the loss plugin and its hyperparameters), whatever the lr"
        )
    return (
        f"{where} (lr={lr:.3g}) on finite outputs: the loss broke as training went on; "
        "lower the learning-rate range (search.lr) or check the loss's hyperparameters"
    )


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training run."""

    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # "bf16" / "fp16": CUDA autocast (fp16 with gradient scaling)


@dataclass
class EpochReport:
    """Metrics after one epoch."""

    epoch: int
    train_loss: float
    val_acc: float  # the task's selection metric (accuracy for classification)
    val_loss: float
    parts: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    # Rows each data-parallel worker trained on this epoch, in rank order (empty: one process).
    worker_rows: tuple[int, ...] = ()


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`; the model holds the best-validation weights."""

    best_val_acc: float
    best_epoch: int
    epochs_run: int
    history: list[EpochReport]


def _autocast_dtype(precision: str, device: torch.device) -> tuple[torch.dtype, bool]:
    """The autocast dtype for ``precision`` and whether autocast is on.

    Mixed precision is used on CUDA only; on CPU training stays fp32 (CPU autocast
    is slower than fp32 for the small students kdforge trains there).
    """
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in ("fp32", *dtypes):
        raise ConfigError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    if device.type != "cuda" or precision == "fp32":
        return torch.float32, False
    return dtypes[precision], True


def make_optimizer(
    params: list[torch.Tensor], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW over ``params``, fused into one kernel per step where torch supports it.

    The fused kernel does the same update; torch's default on CPU is a Python loop over
    the parameters, and on the small students kdforge trains there the fused one takes
    ~19% off a whole training run (``benchmarks/trainer_step.py``).
    """
    fusable = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fusable or None)


def train_model(
    model: nn.Module,
    *,
    x: Inputs,
    y: torch.Tensor,
    val_x: Inputs,
    val_y: torch.Tensor,
    settings: TrainSettings,
    loss: LossStrategy | None = None,
    teacher_logits: torch.Tensor | None = None,
    on_epoch: Callable[[EpochReport], bool | None] | None = None,
    teacher_features: dict[str, torch.Tensor] | None = None,
    online_teacher: Callable[[torch.Tensor], ModelOutput] | None = None,
    parallel: DataParallel | None = None,
    task: Task | None = None,
) -> TrainResult:
    """Train ``model`` in place and load its best-validation weights.

    Args:
        model: The student (or teacher being trained).
        x: Training inputs (may include unlabeled transfer rows).
        y: Training labels, ``-1`` for unlabeled rows.
        val_x: Validation inputs.
        val_y: Validation labels.
        settings: Epochs, learning rate, batch size, seed, device.
        loss: Distillation loss; None trains on the labels alone (cross-entropy).
        teacher_logits: Teacher logits aligned with ``x``; required with a ``loss``
            that needs logits (``loss.needs(...).logits``).
        on_epoch: Called after every epoch; returning True stops training.
        teacher_features: Named teacher features aligned with ``x``, for a loss that
            needs features; the student's are tapped (:mod:`kdforge.features`) and
            the loss's learnable parts are optimised with the student.
        online_teacher: Teacher outputs for a (randomly augmented) training batch; when
            given it replaces ``teacher_logits``/``teacher_features``
            (:class:`kdforge.teacher.online.OnlineTeacher`).
        parallel: This process's place in a data-parallel run (its process group
            already initialised); every worker calls this with the same arguments and
            trains on its share of each batch of ``settings.batch_size`` rows, which
            must divide by the workers. ``on_epoch`` runs on every worker.
        task: What the targets are; its label loss trains without a ``loss``, its
            metric (in its direction) picks the best epoch and the ``loss`` is given
            it. None: classification (cross-entropy, accuracy).

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
    """
    device = torch.device(settings.device)
    needs = loss.needs(loss.params) if loss is not None else None
    if loss is not None and task is not None:
        loss.task = task
    if loss is None:
        keep = task.labeled(y) if task is not None else y != UNLABELED
        x, y = take(x, keep), y[keep]
    elif online_teacher is None and needs is not None and needs.logits and teacher_logits is None:
        raise PluginError(f"loss {loss.name!r} needs teacher logits aligned with the rows")
    elif online_teacher is None and needs is not None and needs.features and not teacher_features:
        raise PluginError(f"loss {loss.name!r} needs teacher features aligned with the rows")
    x, y = to_device(x, device), y.to(device)
    val_x, val_y = to_device(val_x, device), val_y.to(device)
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(device)
    teacher_features = {k: v.to(device) for k, v in (teacher_features or {}).items()}
    model.to(device)
    trim = VocabularyTrim.of(model)
    if trim is not None:
        # A trimmed LM student's logits are over the kept tokens: targets become its
        # entries, and each batch of teacher outputs is renormalised over the same
        # tokens (validation targets are mapped by evaluate()).
        y = trim.targets(y)
    tap = student_tap(model, needs)
    if loss is not None:
        _bind_loss(
            loss,
            model,
            x,
            settings.batch_size,
            device,
            tap,
            teacher_logits,
            teacher_features,
            online_teacher,
        )
    generator = torch.Generator().manual_seed(settings.seed)
    # A loss's learnable parts (e.g. FitNets' adapter) train with the student.
    extra = loss.parameters() if loss is not None else []
    step_model: nn.Module = model
    batch_rows = settings.batch_size
    if parallel is not None:
        # Same start on every worker; the wrapper (DDP/FSDP) reduces the model's
        # gradients, sync_gradients the loss's own parameters.
        distributed.broadcast_(list(extra))
        step_model = distributed.wrap_model(model, parallel, device)
        batch_rows = settings.batch_size // parallel.world_size
    optimizer = make_optimizer([*model.parameters(), *extra], settings.lr, settings.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(x) / settings.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.epochs * steps_per_epoch
    )
    amp_dtype, amp_enabled = _autocast_dtype(settings.precision, device)
    # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_enabled and amp_dtype == torch.float16)
    best_acc = task.worst if task is not None else -1.0
    best_epoch, best_state = 0, copy.deepcopy(model.state_dict())
    history: list[EpochReport] = []
    step = 0  # optimizer steps taken: a loss broken before the first says the lr is not why
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(device)
        shares: list[tuple[int, int]] = []
        if parallel is not None:
            order, shares = distributed.shard_order(
                order, settings.batch_size, parallel.rank, parallel.world_size
            )
        total, seen = 0.0, 0
        parts_sum: dict[str, float] = {}
        # Same batches on both paths: indexing in-memory tensors, or streaming lazy
        # inputs through a DataLoader (see kdforge.batching).
        for number, (idx, batch) in enumerate(
            iter_batches(x, batch_rows, order, augment=True, seed=settings.seed + epoch)
        ):
            # A disabled autocast still costs a context switch per step; skip it on fp32.
            with (
                torch.autocast(device.type, dtype=amp_dtype)
                if amp_enabled
                else contextlib.nullcontext()
            ):
                logits, student_features = forward_tapped(step_model, batch.to(device), tap)
                if loss is None:
                    value = (
                        task.label_loss(logits, y[idx])
                        if task is not None
                        else F.cross_entropy(logits, y[idx])
                    )
                    parts = {"ce": float(value.detach())}
                else:
                    teacher = (
                        online_teacher(batch.to(device))
                        if online_teacher is not None
                        else teacher_rows(teacher_logits, teacher_features, idx)
                    )
                    if trim is not None:
                        teacher = trim.output(teacher)
                    result = loss(ModelOutput(logits, student_features), teacher, y[idx])
                    value, parts = result.total, result.parts
            # One read of the loss per step serves both the check and the epoch mean.
            current = float(value.detach())
            broken = not math.isfinite(current)
            n = len(idx)
            if parallel is not None:
                # Every worker stops together, or the others would wait in an all-reduce.
                elsewhere = distributed.any_worker(broken, device)
                if elsewhere and not broken:
                    raise TrainingDiverged(
                        f"training loss became non-finite on another worker at epoch "
                        f"{epoch}, step {step + 1}"
                    )
                # The wrappers average gradients over workers; weighting each worker's
                # mean loss by its share of the global batch makes that average the
                # gradient of the whole batch's mean loss (a stand-in row weighs 0).
                rows, n = shares[number]
                value = value * (n * parallel.world_size / rows)
            if broken:
                raise TrainingDiverged(
                    _divergence_reason(
                        current, epoch, step, settings.lr, batch, logits, teacher_logits, idx
                    )
                )
            step += 1
            optimizer.zero_grad(set_to_none=True)
            if scaler.is_enabled():
                scaler.scale(value).backward()
                if parallel is not None:
                    distributed.sync_gradients(list(extra), parallel.world_size)
                scaler.step(optimizer)
                scaler.update()
            else:
                value.backward()
                if parallel is not None:
                    distributed.sync_gradients(list(extra), parallel.world_size)
                optimizer.step()
            scheduler.step()
            total += current * n
            for name, part in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + part * n
            seen += n
        worker_rows: tuple[int, ...] = ()
        if parallel is not None:
            # The epoch's means over every worker's rows, as one process would report.
            names = sorted(parts_sum)
            summed = distributed.all_sum([total, *(parts_sum[k] for k in names)], device)
            total, parts_sum = summed[0], dict(zip(names, summed[1:], strict=True))
            worker_rows = distributed.gather_rows(seen, parallel.world_size, device)
            seen = sum(worker_rows)
        # Every worker holds the same weights, so each validates alike (with FSDP the
        # forward pass is a collective that all of them must run anyway).
        val_acc, val_loss = evaluate(model, val_x, val_y, task)
        report = EpochReport(
            epoch=epoch,
            train_loss=total / max(seen, 1),
            val_acc=val_acc,
            val_loss=val_loss,
            parts={k: v / max(seen, 1) for k, v in parts_sum.items()},
            lr=float(scheduler.get_last_lr()[0]),
            worker_rows=worker_rows,
        )
        history.append(report)
        if task.better(val_acc, best_acc) if task is not None else val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None and on_epoch(report):
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_acc, best_epoch, len(history), history)


def _bind_loss(
    loss: LossStrategy,
    model: nn.Module,
    x: Inputs,
    batch_size: int,
    device: torch.device,
    tap: FeatureTap | None,
    teacher_logits: torch.Tensor | None,
    teacher_features: dict[str, torch.Tensor],
    online_teacher: Callable[[torch.Tensor], ModelOutput] | None = None,
) -> None:
    """Show the loss one batch of outputs so it can pair layers and build adapters.

    Runs only for losses that read features or override ``bind``; the probe runs in
    eval mode without gradients, so it changes no weights, statistics or RNG state.
    """
    if tap is None and type(loss).bind is LossStrategy.bind:
        return
    idx, batch = next(iter_batches(x, batch_size))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, features = forward_tapped(model, batch.to(device), tap)
    model.train(was_training)
    teacher = (
        online_teacher(batch.to(device))
        if online_teacher is not None
        else teacher_rows(teacher_logits, teacher_features, idx)
    )
    trim = VocabularyTrim.of(model)
    if trim is not None:  # as in training: the teacher over the kept tokens only
        teacher = trim.output(teacher)
    loss.bind(ModelOutput(logits, features), teacher)
