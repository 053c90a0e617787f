"""Checks of the loaded data against the teacher, before any teacher output is computed.

A search fails here, with both sides named, when the data and the teacher cannot work
together: an empty split, non-finite inputs, labels out of range, or a teacher built
for another input shape or number of classes (declared, or found by running it on two
validation rows).
"""

from __future__ import annotations

import torch

from kdforge.batching import iter_batches
from kdforge.config import DatasetRef
from kdforge.data import DataSplits
from kdforge.errors import DataError
from kdforge.interfaces import Teacher
from kdforge.plugin_host.split_record import count_seen

__all__ = ["check_data_against_teacher", "check_split_against_teacher"]


def check_data_against_teacher(splits: DataSplits, teacher: Teacher, teacher_name: str) -> None:
    """Fail before the search when data and teacher cannot work together.

    Raises:
        DataError: empty split, non-finite inputs, labels out of range, or a teacher
            built for another input shape or number of classes (both sides shown).
    """
    info = splits.info
    for name, split in splits.named_splits().items():
        if len(split) == 0 and name != "transfer":
            raise DataError(f"dataset {info.name!r}: the {name} split is empty")
        # Streamed (lazy) inputs are not read here: a full pass would cost an epoch.
        if (
            isinstance(split.x, torch.Tensor)
            and split.x.is_floating_point()
            and not bool(torch.isfinite(split.x).all())
        ):
            bad = int((~torch.isfinite(split.x)).flatten(1).any(1).sum())
            raise DataError(f"dataset {info.name!r}: {bad} {name} inputs contain NaN or inf")
        labeled = split.y[split.y >= 0]
        if bool((split.y < -1).any()):
            raise DataError(
                f"dataset {info.name!r}: the {name} split has labels below -1 "
                f"(lowest {int(split.y.min())}); labels are 0..{info.num_classes - 1}, or -1 "
                "for an unlabeled training row"
            )
        if name in ("val", "test") and len(labeled) != len(split.y):
            raise DataError(
                f"dataset {info.name!r}: {len(split.y) - len(labeled)} rows of the {name} split "
                "have no label (-1); validation and test rows must be labeled"
            )
        if len(labeled) and int(labeled.max()) >= info.num_classes:
            raise DataError(
                f"dataset {info.name!r}: {name} labels go up to {int(labeled.max())} but the "
                f"dataset declares {info.num_classes} classes"
            )
    expected_shape = teacher.expected_input_shape()
    if expected_shape is not None and tuple(expected_shape) != tuple(info.input_shape):
        raise DataError(
            f"teacher {teacher_name!r} expects inputs of shape {tuple(expected_shape)} but "
            f"dataset {info.name!r} gives {tuple(info.input_shape)}"
        )
    expected_classes = teacher.expected_num_classes()
    if expected_classes is not None and expected_classes != info.num_classes:
        raise DataError(
            f"teacher {teacher_name!r} predicts {expected_classes} classes but dataset "
            f"{info.name!r} has {info.num_classes}"
        )
    _probe_teacher(splits, teacher, teacher_name)


def _probe_teacher(splits: DataSplits, teacher: Teacher, teacher_name: str) -> None:
    """Run the teacher on two validation rows: catches what no declaration says."""
    info = splits.info
    try:
        _, sample = next(iter_batches(splits.val.x, 2))
    except Exception:  # an unreadable streamed row is reported by the dataset itself
        return
    try:
        output = teacher.predict(sample)
    except Exception as exc:
        raise DataError(
            f"teacher {teacher_name!r} cannot run on dataset {info.name!r}'s inputs "
            f"(shape {tuple(sample.shape[1:])}, dtype {sample.dtype}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ) from None
    logits = output.logits
    if logits is not None and (logits.ndim != 2 or logits.shape[-1] != info.num_classes):
        raise DataError(
            f"teacher {teacher_name!r} returns logits of shape {tuple(logits.shape[1:])} per "
            f"row but dataset {info.name!r} has {info.num_classes} classes"
        )


def check_split_against_teacher(
    dataset: DatasetRef, splits: DataSplits, teacher: Teacher, teacher_name: str
) -> str | None:
    """Refuse a search whose val/test rows the teacher trained on.

    A kdforge checkpoint records the teacher's split (:mod:`kdforge.plugin_host.split_record`):
    with row hashes, the search's val and test rows are looked up among the teacher's
    training rows; without, the dataset, its parameters and ``split_seed`` must match.

    Returns:
        A line saying what was checked, or None when the teacher records no split.

    Raises:
        DataError: evaluation rows the teacher trained on, with counts and the fix.
    """
    meta = getattr(teacher, "meta", None)
    if not isinstance(meta, dict) or meta.get("dataset") != dataset.name:
        return None
    record = meta.get("split")
    if not isinstance(record, dict):  # checkpoints before split_seed: split by `seed`
        record = {"dataset": dataset.name, "params": None, "split_seed": meta.get("seed")}
    theirs = record.get("split_seed")
    fix = (
        f"set dataset.split_seed: {theirs} (the teacher's split), or train the teacher on "
        f"this split (dataset.split_seed {dataset.split_seed})"
    )
    hashes = record.get("train_hashes")
    if hashes is not None:
        baseline = dict(record.get("self_seen") or {})
        leaks = []
        for name in ("val", "test"):
            rows = getattr(splits, name)
            seen = int(count_seen(rows.x, hashes).sum())
            if seen > int(baseline.get(name, 0)):
                leaks.append(f"{seen} of {len(rows)} {name} rows")
        if leaks:
            raise DataError(
                f"dataset: {' and '.join(leaks)} of this search were in teacher "
                f"{teacher_name!r}'s training split (split_seed {theirs}; this search: "
                f"{dataset.split_seed}), so its accuracy there would be inflated",
                hint=fix,
            )
        return "teacher split checked: no val/test row of this search was in its training rows"
    same = theirs == dataset.split_seed and record.get("params") in (None, dict(dataset.params))
    if not same:
        raise DataError(
            f"dataset: teacher {teacher_name!r} was trained on another split of "
            f"{dataset.name!r} (split_seed {theirs}; this search: {dataset.split_seed}), "
            "so this search's val/test rows include rows it trained on",
            hint=fix,
        )
    return None
