"""The teacher's outputs, computed once per (teacher, data, preprocessing) and kept on disk.

A search needs the teacher's logits (and, for feature losses, features) on every split.
They are computed once and stored in the cache folder under a key hashed from

* the teacher's :meth:`~kdforge.interfaces.Teacher.fingerprint` (its files) and class,
* the data's :meth:`~kdforge.data.DataSplits.fingerprint` (every split's content, or a
  streamed dataset's files and preprocessing) as the teacher reads it: when the
  dataset gives the teacher its own view (``Split.teacher_x``), that view and the
  labels only, so a search that changes only the student's view is a hit,
* what is stored: logits and/or which features, storage dtype, top-k.

A later search with the same key reads the entry instead of running the teacher (zero
forward calls); changing the teacher file or the data changes the key (a miss, then a
new entry). Entries are ``.npy`` files read memory-mapped (:mod:`kdforge.teacher.cached_rows`);
trials receive a path, not a copy (``share: memmap``), or tensors through Ray's object
store once (``share: object_store``, for clusters without a shared folder).

When the training inputs are randomly augmented, precomputed outputs would not match
the augmented batches: the teacher then runs online in each trial
(:class:`~kdforge.teacher.online.OnlineTeacher`) and the log says so. ``teacher_cache.mode:
online`` asks for the same without augmentation (corpora too big to store).

Before an entry is computed its size (of the logits) is printed, and an entry that would
not fit on the cache folder's disk (with a margin) is refused with the settings that
shrink it: ``top_k`` (per position for language models), ``dtype``, ``mode: online``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import torch

from kdforge.batching import has_augmentation, iter_batches
from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.data import PER_POSITION_TASKS, DataSplits, Inputs, TopKLogits
from kdforge.errors import ConfigError, DataError
from kdforge.interfaces import LossNeeds, Teacher
from kdforge.storage import is_remote, join, local_mirror, pull_entry, push_entry
from kdforge.teacher.cached_rows import (
    DTYPE_BYTES,
    CachedRows,
    save_rows,
    topk_lse_bytes_per_position,
)
from kdforge.teacher.inference import TeacherInference
from kdforge.teacher.online import OnlineTeacher
from kdforge.teacher.outputs import TeacherOutputs, training_inputs

__all__ = [
    "CACHE_FORMAT",
    "CacheEntry",
    "cache_dir_for",
    "cache_key",
    "check_disk_space",
    "default_cache_dir",
    "estimate_cache_size",
    "human_bytes",
    "prepare_teacher_outputs",
    "share_mode",
]

logger = logging.getLogger("kdforge.teacher_cache")

#: Bumped whenever the layout of an entry changes (old entries are then misses).
CACHE_FORMAT = 1
_META = "meta.json"


def default_cache_dir(output_dir: str | Path) -> Path:
    """``<output_dir>/.teacher-cache``: next to the searches that use it."""
    return Path(output_dir).expanduser().resolve() / ".teacher-cache"


def cache_key(
    teacher: Teacher, splits: DataSplits, needs: LossNeeds, settings: TeacherCacheSettings
) -> tuple[str, dict[str, Any]]:
    """The entry key (hex) and the parts it is hashed from (the teacher's view of the
    data: :meth:`~kdforge.data.DataSplits.for_teacher`)."""
    splits = splits.for_teacher()
    parts = {
        "format": CACHE_FORMAT,
        "teacher_class": f"{type(teacher).__module__}.{type(teacher).__qualname__}",
        "teacher_fingerprint": teacher.fingerprint(),
        "data_fingerprint": splits.fingerprint(),
        "input": [list(splits.info.input_shape), splits.info.input_dtype],
        "logits": needs.logits,
        "features": needs.features,
        "teacher_layers": sorted(needs.teacher_layers) if needs.teacher_layers else None,
        "dtype": settings.dtype,
        "top_k": settings.top_k,
    }
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32], parts


class CacheEntry:
    """One cached set of teacher outputs in ``folder`` (written atomically)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def exists(self) -> bool:
        """True when the entry was completely written (here, or in the store mirrored)."""
        return (self.folder / _META).is_file() or pull_entry(self.folder)

    def read_meta(self) -> dict[str, Any]:
        """The entry's ``meta.json``."""
        return dict(json.loads((self.folder / _META).read_text()))

    def load(self, *, share: str) -> TeacherOutputs:
        """The cached outputs; train rows memory-mapped (``memmap``) or in memory.

        Raises:
            OSError / ValueError / KeyError: a damaged entry (the caller recomputes).
        """
        meta = self.read_meta()
        specs = meta["arrays"]

        def rows(spec: dict[str, Any]) -> CachedRows:
            found = CachedRows.from_spec(self.folder, spec)
            len(found[:1])  # open the files now, so a damaged entry fails here
            return found

        def dense(name: str) -> torch.Tensor:
            # Val/test logits serve the teacher's metrics only: dense (a top-k entry's
            # other tokens share its rest mass, see TopKLogits.dense).
            if name not in specs:
                return torch.empty(meta["rows"][name.split("_", 1)[1]], 0)
            return rows(specs[name]).dense()

        train: Any
        if "logits_train" not in specs:
            train = torch.empty(meta["rows"]["train"], 0)
        elif share == "memmap":
            train = rows(specs["logits_train"])
        else:
            train = rows(specs["logits_train"]).materialize()
        features: dict[str, Any] = {}
        for name, spec in meta["features"].items():
            found = rows(spec)
            features[name] = found if share == "memmap" else found.materialize()
        # CachedRows stands in for tensors: the trainer only indexes them and calls .to().
        return TeacherOutputs(
            train=cast(torch.Tensor, train),
            val=dense("logits_val"),
            test=dense("logits_test"),
            forward_calls=0,
            train_features=cast(dict[str, torch.Tensor], features),
            has_logits=bool(meta["has_logits"]),
        )

    def write(
        self,
        outputs: TeacherOutputs,
        settings: TeacherCacheSettings,
        key_parts: dict[str, Any],
        report: dict[str, dict[str, float]],
    ) -> None:
        """Store ``outputs`` (to a temporary folder renamed into place at the end)."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.folder.parent / f".tmp-{self.folder.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            arrays: dict[str, Any] = {}
            if outputs.has_logits:
                for split in ("train", "val", "test"):
                    arrays[f"logits_{split}"] = save_rows(
                        tmp,
                        f"logits_{split}",
                        getattr(outputs, split),
                        dtype=settings.dtype,
                        top_k=settings.top_k,
                    )
            features = {
                name: save_rows(tmp, f"feature_{i}", value, dtype=settings.dtype)
                for i, (name, value) in enumerate(outputs.train_features.items())
            }
            meta = {
                "key": key_parts,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "has_logits": outputs.has_logits,
                "rows": {s: len(getattr(outputs, s)) for s in ("train", "val", "test")},
                "arrays": arrays,
                "features": features,
                "report": report,
            }
            (tmp / _META).write_text(json.dumps(meta, indent=1))
            try:
                os.replace(tmp, self.folder)
            except OSError:
                # Another search wrote the same entry first: theirs is as good.
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                push_entry(self.folder)  # a cache on an object store gets the entry
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _accuracy_report(teacher: Teacher, splits: DataSplits) -> dict[str, dict[str, float]]:
    """Per-member accuracies on val and test, for teachers that offer them (ensembles)."""
    report = getattr(teacher, "accuracy_report", None)
    if not callable(report):
        return {}
    return {"val": report(splits.val), "test": report(splits.test)}


def _predict_split(teacher: Teacher, x: Inputs, batch_size: int = 512) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for _, batch in iter_batches(x, batch_size):
            logits = teacher.predict(batch).logits
            width = torch.empty(len(batch), 0)
            outs.append(logits.detach().float().cpu() if logits is not None else width)
    return torch.cat(outs) if outs else torch.empty(0)


def _online_outputs(teacher: Teacher, splits: DataSplits, needs: LossNeeds) -> TeacherOutputs:
    """Val/test outputs now; training batches are run by the trials' OnlineTeacher."""
    val = _predict_split(teacher, splits.val.x)
    test = _predict_split(teacher, splits.test.x)
    # (n, classes) or per position (n, T, classes): the train tensor keeps the row shape.
    has_logits = val.dim() >= 2 and val.shape[-1] > 0
    outputs = TeacherOutputs(
        train=torch.empty(0, *val.shape[1:]) if has_logits else torch.empty(0, 0),
        val=val,
        test=test,
        forward_calls=0,
        has_logits=has_logits,
    )
    outputs.online_teacher = OnlineTeacher(teacher, needs)
    return outputs


def prepare_teacher_outputs(
    teacher: Teacher,
    splits: DataSplits,
    settings: TeacherCacheSettings,
    *,
    cache_dir: Path,
    needs: LossNeeds | None = None,
    share: str = "memmap",
    emit: Callable[[str], None] = print,
    inference: TeacherInference | None = None,
) -> TeacherOutputs:
    """The teacher's outputs for a search: from the cache, computed and cached, or online.

    Args:
        teacher: The loaded teacher.
        splits: The data; the teacher reads (and the key hashes) ``Split.teacher_x``
            where the dataset gives the teacher its own view.
        settings: The ``teacher_cache`` config section.
        cache_dir: The cache folder.
        needs: What the loss reads (default: logits only).
        share: ``memmap`` (trials map the cache files) or ``object_store`` (tensors).
        emit: Where the progress lines go.
        inference: Where outputs that are not cached are computed (default: in this
            process, 512-row batches); the ``teacher_inference`` section.

    Returns:
        The outputs; ``forward_calls`` counts the teacher calls made here (0 on a hit).
        ``outputs.online_teacher`` is set when the teacher must run in the trials.
    """
    needs = needs or LossNeeds()
    inference = inference or TeacherInference()
    report: dict[str, dict[str, float]] = {}
    if splits.has_teacher_view:
        train = training_inputs(splits)
        if has_augmentation(train.x) or has_augmentation(train.teacher_inputs):
            # An online teacher runs on the student's (augmented) batches: another view.
            raise DataError(
                f"dataset {splits.info.name!r}: the training inputs are randomly augmented "
                "and the teacher reads its own view of the rows (teacher_x); the teacher "
                "cannot run on the student's augmented batches",
                hint="turn the dataset's augmentation off, or give both sides one view",
            )
        # The teacher's view only: its key ignores the student's view, so changing
        # the student's representation reuses the cached outputs.
        splits = splits.for_teacher()
    if has_augmentation(training_inputs(splits).x):
        reason = (
            "the training inputs are randomly augmented, so outputs precomputed on the "
            "unaugmented rows would not match the batches the student sees"
        )
        emit(f"teacher runs online in every trial (no cache for training rows): {reason}")
        logger.info("teacher online: %s", reason)
        outputs = _online_outputs(teacher, splits, needs)
        report = _accuracy_report(teacher, splits)
    elif settings.mode == "online":
        emit("teacher runs online in every trial (teacher_cache.mode: online): no stored outputs")
        logger.info("teacher online: teacher_cache.mode is online")
        outputs = _online_outputs(teacher, splits, needs)
        report = _accuracy_report(teacher, splits)
    elif not settings.enabled:
        outputs = inference(teacher, splits, needs=needs)
        report = _accuracy_report(teacher, splits)
    else:
        outputs, report = _cached(
            teacher, splits, settings, cache_dir, needs, share, emit, inference
        )
    outputs.teacher_report = report
    for split, accuracies in report.items():
        emit(
            f"teacher accuracy on {split}: "
            + ", ".join(f"{name}={acc:.4f}" for name, acc in accuracies.items())
        )
    return outputs


def _cached(
    teacher: Teacher,
    splits: DataSplits,
    settings: TeacherCacheSettings,
    cache_dir: Path,
    needs: LossNeeds,
    share: str,
    emit: Callable[[str], None],
    inference: TeacherInference,
) -> tuple[TeacherOutputs, dict[str, dict[str, float]]]:
    key, parts = cache_key(teacher, splits, needs, settings)
    # Absolute: trials open the files from their own working directories.
    entry = CacheEntry(cache_dir.expanduser().resolve() / key)
    if entry.exists:
        try:
            outputs = entry.load(share=share)
            emit(f"teacher outputs: cache hit {entry.folder} (teacher not run)")
            return outputs, dict(entry.read_meta().get("report", {}))
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("damaged teacher cache entry %s (%s): recomputing", entry.folder, exc)
            shutil.rmtree(entry.folder, ignore_errors=True)
    size, formula = estimate_cache_size(splits, settings)
    if size:
        emit(f"teacher outputs: cache entry of about {human_bytes(size)} ({formula}) to build")
        check_disk_space(size, entry.folder.parent)
    started = time.perf_counter()
    # Per-position logits with top_k are encoded batch by batch as they are computed.
    per_position = settings.top_k is not None and splits.info.task in PER_POSITION_TASKS
    if per_position:
        computed = inference(teacher, splits, needs=needs, emit=emit, top_k=settings.top_k)
    else:
        computed = inference(teacher, splits, needs=needs, emit=emit)
    report = _accuracy_report(teacher, splits)
    try:
        entry.write(computed, settings, parts, report)
    except OSError as exc:
        emit(f"teacher outputs: computed, but the cache folder is not writable ({exc})")
        for split in ("val", "test"):  # metrics read dense logits (see TopKLogits.dense)
            rows = getattr(computed, split)
            if isinstance(rows, TopKLogits):
                setattr(computed, split, rows.dense())
        return computed, report
    emit(
        f"teacher outputs: cache miss, computed in {time.perf_counter() - started:.1f}s "
        f"({computed.forward_calls} teacher calls) and stored in {entry.folder}"
    )
    outputs = entry.load(share=share)
    outputs.forward_calls = computed.forward_calls
    return outputs, report


def human_bytes(size: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def estimate_cache_size(splits: DataSplits, settings: TeacherCacheSettings) -> tuple[int, str]:
    """Bytes the logits of a cache entry take on disk, and how they add up.

    ``rows x positions x k x bytes`` for per-position logits (language models, with
    ``top_k``: values, int32 indices and the fp32 log-sum-exp per position), ``rows x
    classes x bytes`` otherwise. Features (for feature losses) come on top.
    """
    info = splits.info
    rows = len(training_inputs(splits).x) + len(splits.val.x) + len(splits.test.x)
    size = DTYPE_BYTES[settings.dtype]
    classes = info.num_classes
    if info.task in PER_POSITION_TASKS:
        shape = info.teacher_input_shape or info.input_shape
        positions = int(shape[0]) if shape else 1
        if settings.top_k is not None:
            k = min(settings.top_k, classes)
            per = topk_lse_bytes_per_position(k, settings.dtype)
            return rows * positions * per, (
                f"{rows} rows x {positions} positions x (k={k} x ({size} + 4 index) + 4 lse) bytes"
            )
        return rows * positions * classes * size, (
            f"{rows} rows x {positions} positions x {classes} classes x {size} bytes"
        )
    if settings.top_k is not None and settings.top_k < classes:
        return rows * (settings.top_k * (size + 4) + 4), (
            f"{rows} rows x (k={settings.top_k} x ({size} + 4 index) + 4 rest) bytes"
        )
    return rows * classes * size, f"{rows} rows x {classes} classes x {size} bytes"


#: Free space kept on the cache's disk beyond an entry: 10% of it, at least this much.
_DISK_MARGIN = 64 * 1024**2


def check_disk_space(size: int, folder: Path) -> None:
    """Refuse an entry of ``size`` bytes that would not fit on ``folder``'s disk.

    Raises:
        ConfigError: less free space than the entry plus a margin (10%, >= 64 MiB).
    """
    existing = folder.expanduser().resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    needed = size + max(_DISK_MARGIN, size // 10)
    if needed > free:
        raise ConfigError(
            f"teacher_cache: the teacher-output cache needs about {human_bytes(size)} but "
            f"{existing} has {human_bytes(free)} free",
            hint="lower teacher_cache.top_k, store teacher_cache.dtype: float16 or bfloat16, "
            "point teacher_cache.dir at a bigger disk, or set teacher_cache.mode: online",
        )


def cache_dir_for(settings: TeacherCacheSettings, output_dir: str | Path) -> Path:
    """The cache folder: ``teacher_cache.dir``, or ``<output_dir>/.teacher-cache``.

    On an object store (``s3://...``) it is a local mirror: an entry is downloaded
    when the store has it and uploaded once computed.
    """
    remote = settings.dir or (
        join(str(output_dir), ".teacher-cache") if is_remote(str(output_dir)) else None
    )
    if remote and is_remote(remote):
        return local_mirror(remote, "teacher-cache")
    return Path(settings.dir).expanduser() if settings.dir else default_cache_dir(output_dir)


def share_mode(settings: TeacherCacheSettings, *, on_cluster: bool) -> str:
    """How trials get the outputs: ``teacher_cache.share``, with ``auto`` decided.

    ``auto`` is ``memmap`` on one machine and ``object_store`` on a cluster, where the
    cache folder may not be on every node.
    """
    if settings.share != "auto":
        return settings.share
    return "object_store" if on_cluster else "memmap"
