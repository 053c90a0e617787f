"""Checks of the loaded data against the teacher, before any teacher output is computed.

A search fails here, with both sides named, when the data and the teacher cannot work
together: an empty split, non-finite inputs, labels out of range, or a teacher built
for another input shape or number of classes (declared, or found by running it on two
validation rows); and a student of the search space that cannot run on the data
(one student sampled, built and run on two validation rows), before Ray starts.
"""

from __future__ import annotations

from typing import Any

import optuna
import torch

from kdforge.batching import iter_batches
from kdforge.config import DatasetRef
from kdforge.data import DataInfo, DataSplits, VocabularyTrim, is_token_dtype
from kdforge.errors import ConfigError, DataError, KDForgeError
from kdforge.interfaces import SearchSpace, Task, Teacher
from kdforge.plugin_host.split_record import count_seen
from kdforge.training.supported_tasks import require_space_outputs

__all__ = [
    "check_data_against_teacher",
    "check_split_against_teacher",
    "check_student_space",
    "describe_splits",
    "teacher_gap_warning",
]

#: The teacher's val accuracy may exceed its test accuracy by this much before it
#: counts as "far above" (and by three standard errors of the difference).
TEACHER_GAP = 0.05


def check_data_against_teacher(
    splits: DataSplits,
    teacher: Teacher,
    teacher_name: str,
    task: Task | None = None,
    *,
    dataset: DatasetRef | None = None,
) -> None:
    """Fail before the search when data and teacher cannot work together.

    The teacher is checked against the view of the rows it reads (``Split.teacher_x``
    when the dataset gives it one, else the student's inputs).

    Args:
        splits: The loaded data.
        teacher: The loaded teacher.
        teacher_name: Its plugin name, for messages.
        task: The task the targets are checked for (None: classification).
        dataset: The ``dataset`` config section: its representation params are
            named when the teacher cannot read the view it is given.

    Raises:
        DataError: empty split, non-finite inputs, labels out of range, or a teacher
            built for another input shape, dtype or number of classes (both sides
            shown).
    """
    info = splits.info
    for name, split in splits.named_splits().items():
        if len(split) == 0 and name != "transfer":
            raise DataError(f"dataset {info.name!r}: the {name} split is empty")
        # Streamed (lazy) inputs are not read here: a full pass would cost an epoch.
        for x in (split.x, split.teacher_x):
            if (
                isinstance(x, torch.Tensor)
                and x.is_floating_point()
                and not bool(torch.isfinite(x).all())
            ):
                bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
                raise DataError(f"dataset {info.name!r}: {bad} {name} inputs contain NaN or inf")
        if task is not None and task.name != "classification":
            # The task checked its own targets; every val and test row needs one.
            missing = int((~task.labeled(split.y)).sum())
            if name in ("val", "test") and missing:
                raise DataError(
                    f"dataset {info.name!r}: {missing} rows of the {name} split have no "
                    "label; validation and test rows must be labeled"
                )
            continue
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
    view = splits.for_teacher()  # what the teacher reads
    seen = _teacher_view(view.info, splits.has_teacher_view, dataset)
    expected_dtype = teacher.expected_input_dtype()
    if expected_dtype is not None and is_token_dtype(expected_dtype) != is_token_dtype(
        view.info.input_dtype
    ):
        wanted = "token ids (integers)" if is_token_dtype(expected_dtype) else "float vectors"
        raise DataError(
            f"teacher {teacher_name!r} reads {wanted}, {expected_dtype}, but dataset "
            f"{info.name!r} gives it {seen}",
            hint=_view_hint(expected_dtype, splits.has_teacher_view),
        )
    expected_shape = teacher.expected_input_shape()
    if expected_shape is not None and tuple(expected_shape) != tuple(view.info.input_shape):
        raise DataError(
            f"teacher {teacher_name!r} expects inputs of shape {tuple(expected_shape)} but "
            f"dataset {info.name!r} gives it {seen}"
        )
    expected_classes = teacher.expected_num_classes()
    if expected_classes is not None and expected_classes != info.num_classes:
        raise DataError(
            f"teacher {teacher_name!r} predicts {expected_classes} classes but dataset "
            f"{info.name!r} has {info.num_classes}"
        )
    _probe_teacher(view, teacher, teacher_name, seen)


def _teacher_view(info: DataInfo, own_view: bool, dataset: DatasetRef | None) -> str:
    """The inputs the teacher reads, in words: shape, dtype, and the dataset params
    that chose them (``representation: bag_of_words``)."""
    text = f"{tuple(info.input_shape)} {info.input_dtype} inputs"
    chosen = _representation_params(dict(dataset.params)) if dataset is not None else []
    if own_view:
        text += " (its own view, teacher_x)"
    elif chosen:  # the representation the student asked for is what the teacher got
        text += " (the student's view)"
    if chosen:
        text += f" from {', '.join(chosen)}"
    return text


def _representation_params(params: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: value`` of every ``*representation`` param, sections (``text``) included."""
    found = []
    for key, value in params.items():
        if isinstance(value, dict):
            found += _representation_params(value, f"{prefix}{key}.")
        elif "representation" in str(key):
            found.append(f"{prefix}{key}: {value}")
    return found


def _view_hint(expected_dtype: str, own_view: bool) -> str:
    if is_token_dtype(expected_dtype):
        return (
            "give the teacher its own view: teacher_representation: tokens (with "
            "tokenizer: the teacher's folder), and keep representation: bag_of_words "
            "for the student"
            + ("" if own_view else " (text datasets; in hf_disk, inside the text section)")
        )
    return "set teacher_representation to the view the teacher was trained on"


def _probe_teacher(
    splits: DataSplits, teacher: Teacher, teacher_name: str, seen: str | None = None
) -> None:
    """Run the teacher on two validation rows: catches what no declaration says.

    ``splits`` are the teacher's view (:meth:`DataSplits.for_teacher`).
    """
    info = splits.info
    try:
        _, sample = next(iter_batches(splits.val.x, 2))
    except Exception:  # an unreadable streamed row is reported by the dataset itself
        return
    try:
        output = teacher.predict(sample)
    except Exception as exc:
        given = seen or f"inputs of shape {tuple(sample.shape[1:])}, dtype {sample.dtype}"
        raise DataError(
            f"teacher {teacher_name!r} cannot run on dataset {info.name!r}'s {given}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        ) from None
    logits = output.logits
    expected = info.output_shape(len(sample))
    if logits is not None and (
        logits.ndim != len(expected) or logits.shape[-1] != info.num_classes
    ):
        per_row = "(seq_len, classes) logits per row" if info.per_position else "classes"
        raise DataError(
            f"teacher {teacher_name!r} returns logits of shape {tuple(logits.shape[1:])} per "
            f"row but dataset {info.name!r} has {info.num_classes} classes "
            f"(the task {info.task!r} needs {per_row})",
            hint="a token tagging teacher: teacher.params.task: token_classification"
            if info.per_position
            else None,
        )


def check_student_space(splits: DataSplits, space: SearchSpace, space_name: str) -> None:
    """Sample one student of the space, build it and run it on two validation rows.

    Every trial builds and runs a student the same way; a space that cannot take the
    data's inputs (e.g. ``mlp`` on token ids) fails here, in one line, before Ray starts.

    Raises:
        ConfigError: the space cannot sample, build or run a student on these inputs,
            or its student returns logits of the wrong shape.
    """
    info = splits.info
    try:
        _, sample = next(iter_batches(splits.val.x, 2))
    except Exception:  # an unreadable streamed row is reported by the dataset itself
        return
    inputs = f"{tuple(sample.shape[1:])} {str(sample.dtype).removeprefix('torch.')}"
    where = f"student space {space_name!r} on dataset {info.name!r} (inputs {inputs})"
    require_space_outputs(space, info, f"student space {space_name!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    try:
        trial = study.ask()
        extra = space.suggest(trial, info)
        arch: dict[str, Any] = {**trial.params, **(extra or {})}
        model = space.build(arch, info).eval()
        with torch.no_grad():
            logits = model(sample)
    except KDForgeError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{where}: a sampled student fails: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
            hint=_space_hint(sample),
        ) from None
    expected = info.output_shape(len(sample))
    trim = VocabularyTrim.of(model)
    if trim is not None:  # a trimmed LM student: logits over its kept tokens only
        expected = (*expected[:-1], len(trim.kept_token_ids))
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(
            f"{where}: a sampled student returns {shape} for {len(sample)} rows, "
            f"expected {expected} logits"
        )


def _space_hint(sample: torch.Tensor) -> str:
    if sample.is_floating_point():
        return "check the space's params against the data (`kdforge plugins show SPACE`)"
    return (
        "these inputs are token ids (integers): use a space that embeds them, such as "
        "`transformer`, or a bag-of-words representation of the text for `mlp`"
    )


def describe_splits(splits: DataSplits, task: Task | None = None) -> str:
    """One line with every split's size and the number of transfer (unlabeled) rows."""
    y = splits.train.y
    unlabeled_train = int((~task.labeled(y)).sum()) if task is not None else int((y < 0).sum())
    transfer = (len(splits.transfer) if splits.transfer is not None else 0) + unlabeled_train
    labeled_train = len(splits.train) - unlabeled_train
    return (
        f"data {splits.info.name}: train {labeled_train:,} rows, val {len(splits.val):,}, "
        f"test {len(splits.test):,}, transfer {transfer:,} unlabeled rows"
        + ("" if transfer else " (none: the student learns on train only)")
    )


def teacher_gap_warning(
    teacher_acc: dict[str, float], n_val: int, n_test: int, held_out: str
) -> str | None:
    """A warning when the teacher's val accuracy is far above its test accuracy.

    "Far" is more than :data:`TEACHER_GAP` and more than three standard errors of
    the difference of two binomial proportions, so a small split does not warn by
    chance. ``held_out`` is ``teacher.held_out``: with ``test`` the user has said the
    teacher saw the validation rows, and nothing is said.
    """
    val, test = teacher_acc["val"], teacher_acc["test"]
    if held_out != "val" or n_val == 0 or n_test == 0:
        return None
    spread = (val * (1 - val) / n_val + test * (1 - test) / n_test) ** 0.5
    gap = val - test
    if gap <= TEACHER_GAP or gap <= 3 * spread:
        return None
    return (
        f"warning: the teacher's val_acc {val:.4f} is far above its test_acc {test:.4f}: it "
        "has probably been trained on rows kdforge uses for validation (e.g. the file "
        "validation is carved from). Give kdforge validation rows the teacher never saw "
        "(a val file), or set teacher.held_out: test to use test as its reference"
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
            # The teacher trained on its own view of the rows (if the data has one).
            rows = getattr(splits.for_teacher(), name)
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
