"""The value types every part of kdforge and every plugin shares.

Data: a dataset plugin returns a :class:`DataSplits`: the train, validation and test splits
(and an optional unlabeled ``transfer`` split), plus a :class:`DataInfo` describing the
per-example input shape and the number of classes. Labels use ``-1`` for "no label" so
that a batch can mix labeled and unlabeled rows.

A split's inputs are either an in-memory tensor (batched by indexing) or, for data too
big for memory, a :class:`LazyInputs` that reads rows on demand (streamed through a
DataLoader with workers, see :mod:`kdforge.batching`). Labels are always in memory.

Model and loss values: :class:`ModelOutput` (logits and named features of a batch),
:class:`TopKLogits` (a sparse stand-in for per-position teacher logits: the k largest
per position plus the log-sum-exp over the vocabulary),
:class:`LossResult`, :class:`LossNeeds` (what a loss reads), :class:`HParam` (a
searchable hyperparameter a plugin declares) and :class:`ExportResult`. The plugin
interfaces in :mod:`kdforge.interfaces` are written in these types.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import torch

from kdforge.errors import ConfigError, DataError, PluginError

__all__ = [
    "ACCURACY",
    "NOT_A_WORD",
    "PER_POSITION_TASKS",
    "UNLABELED",
    "DataInfo",
    "DataSplits",
    "ExportResult",
    "HParam",
    "Inputs",
    "LazyInputs",
    "LossNeeds",
    "LossResult",
    "ModelOutput",
    "Split",
    "TaskMetric",
    "TopKLogits",
    "VocabularyTrim",
    "is_token_dtype",
]

#: Label value meaning "this example has no label" (e.g. rows of a transfer split).
UNLABELED = -1

#: Per-position targets (``token_classification``): a position that is no word's first
#: sub-token (padding, special tokens like ``[CLS]``, a word's later sub-tokens). It is
#: neither scored nor distilled; ``UNLABELED`` (-1) there marks a word whose tag is
#: unknown (transfer rows), still distilled from the teacher.
NOT_A_WORD = -2

#: Tasks whose targets and model outputs hold one row per input position ``(n, T, ...)``.
PER_POSITION_TASKS: frozenset[str] = frozenset({"token_classification", "language_modeling"})


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about the data.

    Attributes:
        name: Dataset name, for reports.
        input_shape: Shape of one example, without the batch axis (e.g. ``(1, 8, 8)``).
        num_classes: Number of classes of the classification task.
        input_dtype: ``torch`` dtype name of the inputs (``"int64"`` for token ids).
        class_names: Optional human-readable class names.
        vocab_size: For token-id inputs: size of the tokenizer's vocabulary.
        pad_token_id: For token-id inputs: the id that marks padding.
        tokenizer: For token-id inputs made by a local tokenizer folder (padded and
            truncated to ``input_shape[0]``): that folder, so the exported student can
            be registered with it and served on raw text.
        task: The task the targets are made for (``"classification"``: int64 class
            ids; ``"regression"``: float rows of real values; ``"multilabel"``: float
            rows of 0/1 labels); a config without a ``task`` section uses it. For the
            other tasks ``num_classes`` is the number of model outputs (targets or
            labels) and ``class_names`` their names. ``"token_classification"``:
            int64 ``(n, seq_len)`` tags per position (``-1`` unknown, ``-2``
            :data:`NOT_A_WORD`); ``num_classes`` is the number of tags.
            ``"language_modeling"``: int64 ``(n, seq_len)`` token ids to predict;
            ``num_classes`` is the vocabulary size.
        teacher_input_shape: When the teacher reads another view of the same rows
            (``Split.teacher_x``, e.g. token ids for a transformer teacher while the
            student reads bag-of-words vectors): the shape of one teacher example.
            None: the teacher reads the student's inputs.
        teacher_input_dtype: The teacher view's dtype name (None: ``input_dtype``).
        teacher_vocab_size: The teacher view's vocabulary size, for token ids.
        teacher_pad_token_id: The teacher view's padding id, for token ids.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    input_dtype: str = "float32"
    class_names: tuple[str, ...] | None = None
    vocab_size: int | None = None
    pad_token_id: int | None = None
    tokenizer: str | None = None
    task: str = "classification"
    teacher_input_shape: tuple[int, ...] | None = None
    teacher_input_dtype: str | None = None
    teacher_vocab_size: int | None = None
    teacher_pad_token_id: int | None = None

    @property
    def num_outputs(self) -> int:
        """Model outputs per example: classes, labels or regression targets."""
        return self.num_classes

    @property
    def has_teacher_view(self) -> bool:
        """True when the teacher reads its own view of the rows (``Split.teacher_x``)."""
        return self.teacher_input_shape is not None

    def for_teacher(self) -> DataInfo:
        """This description as the teacher sees the data: its view's shape, dtype and
        token fields (``self`` when the teacher reads the student's inputs)."""
        if self.teacher_input_shape is None:
            return self
        return replace(
            self,
            input_shape=tuple(self.teacher_input_shape),
            input_dtype=self.teacher_input_dtype or self.input_dtype,
            vocab_size=self.teacher_vocab_size,
            pad_token_id=self.teacher_pad_token_id,
            tokenizer=None,  # the served (student) model's tokenizer, not the teacher's
            teacher_input_shape=None,
            teacher_input_dtype=None,
            teacher_vocab_size=None,
            teacher_pad_token_id=None,
        )

    @property
    def per_position(self) -> bool:
        """True when models give one output row per input position (token tagging)."""
        return self.task in PER_POSITION_TASKS

    def output_shape(self, rows: int) -> tuple[int, ...]:
        """Shape of a model's outputs on ``rows`` examples: ``(rows, K)`` or, per
        position, ``(rows, seq_len, K)``."""
        if self.per_position:
            return (rows, int(self.input_shape[0]), self.num_classes)
        return (rows, self.num_classes)


#: Metrics whose values are fractions, so that differences read as percentage points.
FRACTION_METRICS = frozenset(
    {"acc", "map", "r2", "token_acc", "token_macro_f1", "f1", "macro_f1", "micro_f1"}
)


@dataclass(frozen=True)
class TaskMetric:
    """The metric students are selected by: its name and its direction.

    Its names in results, tables and MLflow are ``val_<name>`` (best validation value
    so far), ``epoch_val_<name>`` (this epoch's) and ``test_<name>`` (test value of the
    best-validation weights): ``val_acc`` and ``test_acc`` for classification.

    Attributes:
        name: The task's metric (``"acc"``, ``"r2"``, ``"map"``, ...).
        higher_is_better: Its direction.
        failed_value: What a trial that failed or was rejected before its first epoch
            reports (a finite value the sampler can rank: 0 accuracy).
    """

    name: str = "acc"
    higher_is_better: bool = True
    failed_value: float = 0.0

    @property
    def val(self) -> str:
        """``val_<name>``."""
        return f"val_{self.name}"

    @property
    def test(self) -> str:
        """``test_<name>``."""
        return f"test_{self.name}"

    @property
    def epoch_val(self) -> str:
        """``epoch_val_<name>``."""
        return f"epoch_val_{self.name}"

    @property
    def mode(self) -> Literal["min", "max"]:
        """``"max"`` or ``"min"``, as Ray Tune and the objectives spell a direction."""
        return "max" if self.higher_is_better else "min"

    def rank(self, value: float | None) -> float:
        """A number that sorts best first when sorted ascending (missing/NaN last)."""
        if value is None or value != value:
            return math.inf
        return -float(value) if self.higher_is_better else float(value)

    def best(self, values: Sequence[float]) -> float:
        """The best of ``values`` in this metric's direction."""
        return max(values) if self.higher_is_better else min(values)

    def gain(self, value: float, reference: float) -> float:
        """How much ``value`` improves on ``reference`` (positive: better)."""
        return value - reference if self.higher_is_better else reference - value

    def gain_text(self, gain: float) -> str:
        """A gain as people read it: percentage points for metrics that are fractions
        (accuracy, mAP, F1, R²), else in the metric's own units (``-40.18 perplexity``)."""
        if self.name in FRACTION_METRICS:
            return f"{gain * 100:+.2f} points"
        direction = "higher" if self.higher_is_better else "lower"
        return f"{gain:+.4g} {self.name} (improvement; {direction} {self.name} is better)"

    def named(self, summary: Mapping[str, Any], *, with_metric: bool = True) -> dict[str, Any]:
        """A search summary with its metric keys named after this metric, as written to
        ``summary.json`` and MLflow (``student_test_acc`` -> ``student_test_r2``), plus
        (``with_metric``) ``metric`` and ``metric_higher_is_better``."""
        out = {_METRIC_KEY.sub(rf"\1_{self.name}\2", k): v for k, v in summary.items()}
        if with_metric:
            out.update(metric=self.name, metric_higher_is_better=self.higher_is_better)
        return out

    @staticmethod
    def of_summary(summary: Mapping[str, Any]) -> TaskMetric:
        """The metric a written summary is named after (accuracy for older ones)."""
        return TaskMetric(
            str(summary.get("metric", "acc")), bool(summary.get("metric_higher_is_better", True))
        )

    def canonical(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The inverse of :meth:`named`: metric keys back to their ``_acc`` names."""
        if self.name == "acc":
            return dict(summary)
        pattern = re.compile(rf"^({_METRIC_KEY_STEMS})_{re.escape(self.name)}(_runs|_mean|_std)?$")
        return {pattern.sub(r"\1_acc\2", k): v for k, v in summary.items()}


# Summary keys that hold the task's metric: <stem>_acc[_runs|_mean|_std].
_METRIC_KEY_STEMS = (
    "teacher_test|teacher_val|teacher_reference|student_test|student_val|"
    "distilled_test|scratch_test|float_test"
)
_METRIC_KEY = re.compile(rf"^({_METRIC_KEY_STEMS})_acc(_runs|_mean|_std)?$")


#: Classification's metric: accuracy, higher is better.
ACCURACY = TaskMetric()


def is_token_dtype(dtype: str) -> bool:
    """True when a ``DataInfo.input_dtype`` name is an integer dtype (token ids)."""
    value = getattr(torch, dtype.removeprefix("torch."), None)
    return isinstance(value, torch.dtype) and not value.is_floating_point and not value.is_complex


class LazyInputs(ABC):
    """Inputs of one split read on demand, for data that should not be held in memory.

    Subclasses read rows from disk by index. They must pickle cheaply (paths and
    settings, never open files or decoded data) because they travel to Ray trials and
    DataLoader worker processes. Indexing (``inputs[3]``, ``inputs[:8]``, ``inputs[idx]``)
    reads and returns a tensor; the trainer streams whole epochs through
    :func:`kdforge.batching.iter_batches` instead.

    Attributes:
        num_workers: DataLoader worker processes used when streaming (0: in-process).
        augmentation: Optional random transform of a batch ``(n, *example_shape)``,
            applied by :meth:`read_batch` only when the training loop asks for it (it
            must pickle, e.g. a module-level class instance, not a lambda).
    """

    num_workers: int = 0
    augmentation: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    @abstractmethod
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one example (no batch axis)."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """dtype of the tensors :meth:`read_batch` returns."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of rows."""

    @abstractmethod
    def read_rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Read rows ``indices`` (in that order, row numbers in ``[0, len(self))``) as
        one stacked tensor of dtype :attr:`dtype`, without augmentation."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A string that changes when the rows or their preprocessing change."""

    def read_batch(self, indices: Sequence[int], *, augment: bool = False) -> torch.Tensor:
        """Read rows ``indices``; with ``augment``, apply :attr:`augmentation` if set.

        Args:
            indices: Row numbers in ``[0, len(self))``.
            augment: Apply the random training augmentation (only the trainer's
                training loop asks for it; teacher outputs and evaluation never do).
        """
        batch = self.read_rows(indices)
        if augment and self.augmentation is not None:
            batch = self.augmentation(batch)
        return batch

    @property
    def augments(self) -> bool:
        """True when :meth:`read_batch` applies a random augmentation on request."""
        return self.augmentation is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """``(len(self), *example_shape)``, like a tensor's shape."""
        return (len(self), *self.example_shape)

    def is_floating_point(self) -> bool:
        """True for floating-point inputs, like ``Tensor.is_floating_point``."""
        return self.dtype.is_floating_point

    def nbytes(self) -> int:
        """Bytes the rows would take as one in-memory tensor."""
        per_row = int(np.prod(self.example_shape, dtype=np.int64)) * self.dtype.itemsize
        return per_row * len(self)

    def __getitem__(self, key: Any) -> torch.Tensor:
        """Read rows by int, slice, index list/array/tensor or boolean mask."""
        if isinstance(key, int | np.integer):
            index = int(key) + len(self) if int(key) < 0 else int(key)
            if not 0 <= index < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self.read_batch([index])[0]
        if isinstance(key, slice):
            rows = np.arange(len(self))[key]
        else:
            array = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
            rows = np.flatnonzero(array) if array.dtype == bool else array.astype(np.int64)
        return self.read_batch(rows.tolist())


#: What a split's inputs can be: an in-memory tensor or rows read on demand.
Inputs: TypeAlias = torch.Tensor | LazyInputs


@dataclass
class Split:
    """One split of a dataset.

    Attributes:
        x: Inputs, shape ``(n, *input_shape)``: a tensor, or :class:`LazyInputs` for
            data streamed from disk.
        y: Integer labels in memory, shape ``(n,)``; ``-1`` marks an unlabeled example.
        teacher_x: The same rows as the teacher reads them, when it reads another
            view than the student (e.g. token ids for a transformer teacher, while
            the student reads bag-of-words vectors in ``x``); None: the teacher reads
            ``x``. Described by ``DataInfo.teacher_input_shape``/``teacher_input_dtype``.
    """

    x: Inputs
    y: torch.Tensor
    teacher_x: Inputs | None = None

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if self.teacher_x is not None and self.teacher_x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"split has {self.teacher_x.shape[0]} teacher inputs but {self.y.shape[0]} labels"
            )

    @property
    def teacher_inputs(self) -> Inputs:
        """What the teacher reads: ``teacher_x`` when set, else ``x``."""
        return self.x if self.teacher_x is None else self.teacher_x

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DataSplits:
    """A dataset split for distillation.

    Attributes:
        info: Shapes and classes.
        train: Training split (labels may contain ``-1``).
        val: Validation split used for model selection and early stopping.
        test: Held-out test split, used only for final reporting.
        transfer: Optional unlabeled inputs on which only the teacher's soft targets
            are available.
    """

    info: DataInfo
    train: Split
    val: Split
    test: Split
    transfer: Split | None = None
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def named_splits(self) -> dict[str, Split]:
        """Return the present splits by name (``train``, ``val``, ``test``, ``transfer``)."""
        out = {"train": self.train, "val": self.val, "test": self.test}
        if self.transfer is not None:
            out["transfer"] = self.transfer
        return out

    @property
    def has_teacher_view(self) -> bool:
        """True when the teacher reads its own view of the rows (``Split.teacher_x``)."""
        return self.train.teacher_x is not None

    def for_teacher(self) -> DataSplits:
        """The splits as the teacher reads them: ``teacher_x`` as every split's ``x``
        and :meth:`DataInfo.for_teacher` as ``info`` (``self`` without a teacher view).

        Its :meth:`fingerprint` covers the teacher's view and the labels only, so the
        teacher's cached outputs survive a change of the student's view.
        """
        if not self.has_teacher_view:
            return self

        def view(split: Split) -> Split:
            return Split(split.teacher_inputs, split.y)

        return DataSplits(
            info=self.info.for_teacher(),
            train=view(self.train),
            val=view(self.val),
            test=view(self.test),
            transfer=view(self.transfer) if self.transfer is not None else None,
        )

    def fingerprint(self) -> str:
        """A content hash of every split's inputs (both views) and labels (stable
        across runs)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, split in self.named_splits().items():
                digest.update(name.encode())
                views = [split.x] if split.teacher_x is None else [split.x, split.teacher_x]
                for view in views:
                    if isinstance(view, LazyInputs):
                        # Hashing every byte of data bigger than memory would cost a full
                        # read; lazy inputs fingerprint their files and preprocessing.
                        digest.update(view.fingerprint().encode())
                for tensor in (*views, split.y):
                    if isinstance(tensor, LazyInputs):
                        continue
                    contiguous = tensor.detach().cpu().contiguous()
                    digest.update(str(tuple(contiguous.shape)).encode())
                    digest.update(str(contiguous.dtype).encode())
                    digest.update(contiguous.numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


@dataclass(frozen=True)
class HParam:
    """A searchable hyperparameter that a plugin adds to the search space.

    Attributes:
        name: Parameter name (unique within the plugin).
        low: Lower bound (inclusive).
        high: Upper bound (inclusive).
        log: Sample on a log scale (requires ``low > 0``).
        kind: ``"float"`` or ``"int"``.
        default: Value used when the parameter is not searched (e.g. a baseline run).
        help: One line for docs and ``kdforge plugins show``.
    """

    name: str
    low: float
    high: float
    log: bool = False
    kind: Literal["float", "int"] = "float"
    default: float | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise PluginError(f"hyperparameter {self.name!r}: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise PluginError(f"hyperparameter {self.name!r}: log scale needs low > 0")


@dataclass(frozen=True)
class VocabularyTrim:
    """A language-model student that knows only some of the tokenizer's tokens.

    Its logits are over the kept entries ``(n, T, V')``: entry ``i`` is original token
    id ``kept_token_ids[i]``. Everything compared with them must speak the same
    entries: :meth:`logits` restricts a teacher's ``(..., V)`` logits to the kept
    tokens (their softmax is the teacher's distribution renormalised over the kept
    tokens), :meth:`targets` maps original target ids to entries (an unkept token
    reads as the unknown token's entry; ``-1``/``-2`` stay). The trainer and
    :func:`kdforge.training.evaluate.evaluate` apply it; a loss that reads teacher
    outputs in another form (e.g. a sparse top-k) restricts them with the same ids.

    Attributes:
        kept_token_ids: ``(V',)`` int64 original ids, sorted.
        unk_index: The student entry unkept ids map to.
    """

    kept_token_ids: torch.Tensor
    unk_index: int

    @classmethod
    def of(cls, model: Any) -> VocabularyTrim | None:
        """The trim of a student module (``kept_token_ids`` attribute; a model followed
        by its task's head is looked through), None when its vocabulary is whole."""
        body = getattr(model, "body", model)
        kept = getattr(body, "kept_token_ids", None)
        if not isinstance(kept, torch.Tensor):
            return None
        return cls(kept, int(getattr(body, "unk_index", 0)))

    def logits(self, logits: Any) -> torch.Tensor:
        """Full-vocabulary logits ``(..., V)`` -> the kept tokens' ``(..., V')``.

        Raises:
            ConfigError: teacher outputs that are not a dense tensor (a per-position
                top-k cache cannot be renormalised over the kept tokens exactly).
        """
        if not isinstance(logits, torch.Tensor):
            raise ConfigError(
                "student.params.vocab: a student with a trimmed vocabulary needs the "
                f"teacher's dense logits, and the teacher's outputs are {type(logits).__name__}",
                hint="remove teacher_cache.top_k, or set student.params.vocab: full",
            )
        if logits.numel() == 0:  # no cached outputs (an online teacher)
            return logits
        return logits.index_select(-1, self.kept_token_ids.to(logits.device))

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Original target ids -> student entries; negative markers unchanged."""
        kept = self.kept_token_ids.to(targets.device)
        lookup = torch.full(
            (int(kept.max()) + 1,), self.unk_index, dtype=torch.int64, device=targets.device
        )
        lookup[kept] = torch.arange(len(kept), device=targets.device)
        inside = (targets >= 0) & (targets < len(lookup))
        mapped = lookup[targets.clamp(0, len(lookup) - 1)]
        unknown = torch.full_like(targets, self.unk_index)
        return torch.where(inside, mapped, torch.where(targets >= 0, unknown, targets))

    def output(self, output: ModelOutput) -> ModelOutput:
        """A teacher's :class:`ModelOutput` with its logits restricted (features as they are)."""
        logits = None if output.logits is None else self.logits(output.logits)
        return ModelOutput(logits, output.features)


@dataclass
class TopKLogits:
    """Per-position teacher logits kept sparse: the k largest plus the log-sum-exp.

    What the teacher-output cache gives for ``token_logits`` outputs with
    ``teacher_cache.top_k`` (never densified to ``(n, T, V)``); a loss that reads it
    (e.g. ``lm_kd``) says so (:meth:`~kdforge.interfaces.LossStrategy.reads_top_k`).
    It supports what the trainer does with teacher outputs: ``len``, ``shape``,
    ``rows[idx]``, ``.to(device)``, ``.float()``.

    Attributes:
        values: The k largest logits per position ``(n, T, k)`` (float, any order).
        indices: Their token ids ``(n, T, k)`` (int64).
        lse: ``logsumexp`` of the position's logits over the whole vocabulary
            ``(n, T)`` (float32), so ``exp(values - lse)`` are the exact probabilities
            (temperature 1) of the kept tokens and ``1 - sum`` is the mass of the rest.
        vocab_size: V, the size of the dense last dimension.
    """

    values: torch.Tensor
    indices: torch.Tensor
    lse: torch.Tensor
    vocab_size: int

    @classmethod
    def from_logits(cls, logits: torch.Tensor, k: int) -> TopKLogits:
        """The top-``k`` form of dense logits ``(..., V)`` (``k`` capped at V)."""
        logits = logits.detach().float()
        k = min(k, logits.shape[-1])
        values, indices = torch.topk(logits, k, dim=-1)
        return cls(values, indices, torch.logsumexp(logits, dim=-1), int(logits.shape[-1]))

    @classmethod
    def cat(cls, parts: Sequence[TopKLogits]) -> TopKLogits:
        """The rows of ``parts`` one after the other (same k and V)."""
        return cls(
            torch.cat([p.values for p in parts]),
            torch.cat([p.indices for p in parts]),
            torch.cat([p.lse for p in parts]),
            parts[0].vocab_size,
        )

    @property
    def k(self) -> int:
        """Kept logits per position."""
        return int(self.values.shape[-1])

    @property
    def shape(self) -> torch.Size:
        """The shape of the dense logits this stands for, ``(n, T, V)``."""
        return torch.Size([*self.lse.shape, self.vocab_size])

    @property
    def device(self) -> torch.device:
        """Where the tensors are."""
        return self.values.device

    def dim(self) -> int:
        """Dimensions of the dense logits."""
        return self.lse.dim() + 1

    def __len__(self) -> int:
        return len(self.lse)

    def __getitem__(self, key: Any) -> TopKLogits:
        return TopKLogits(self.values[key], self.indices[key], self.lse[key], self.vocab_size)

    def to(self, device: Any) -> TopKLogits:
        """The same on ``device``."""
        return TopKLogits(
            self.values.to(device), self.indices.to(device), self.lse.to(device), self.vocab_size
        )

    def float(self) -> TopKLogits:
        """Values and log-sum-exp as float32."""
        return TopKLogits(self.values.float(), self.indices, self.lse.float(), self.vocab_size)

    def is_finite(self) -> bool:
        """True when no value or log-sum-exp is NaN or infinite."""
        return bool(torch.isfinite(self.values).all() and torch.isfinite(self.lse).all())

    def rest_log_mass(self) -> torch.Tensor:
        """``log(1 - sum(exp(values - lse)))`` per position, ``(n, T)``: the teacher's mass
        outside the top k at temperature 1 (-inf when k = V; clamped at 0 mass when
        rounding of stored values makes the kept mass exceed 1)."""
        kept = torch.exp(self.values.float() - self.lse.unsqueeze(-1)).sum(-1)
        return torch.log((1.0 - kept).clamp_min(0.0))

    def dense(self) -> torch.Tensor:
        """Dense float32 logits ``(n, T, V)`` (for metrics only: this is the big form).

        The kept tokens keep their logits; every other token gets one shared logit so
        that together they hold the rest mass (spread evenly) and the log-sum-exp is
        ``lse``. Exact when k = V.
        """
        values = self.values.float()
        out = torch.empty(*self.lse.shape, self.vocab_size, device=values.device)
        if self.k < self.vocab_size:
            rest = self.rest_log_mass() + self.lse - math.log(self.vocab_size - self.k)
            out.copy_(rest.unsqueeze(-1).expand_as(out))
        return out.scatter_(-1, self.indices.long(), values)


@dataclass
class ModelOutput:
    """What a teacher (or a student) produced for a batch.

    Attributes:
        logits: Class scores ``(n, num_classes)``, or None for embedding-only teachers.
        features: Named intermediate features (e.g. ``"block1"``, ``"pooled"``).
    """

    logits: torch.Tensor | None
    features: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class LossResult:
    """A loss value plus its named parts for logging.

    Attributes:
        total: The scalar to back-propagate.
        parts: Detached float values of the terms (e.g. ``{"kd": .., "ce": ..}``).
    """

    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LossNeeds:
    """What a loss needs from the teacher and the student (decided before training).

    Attributes:
        logits: The loss reads teacher logits (False for embedding-only losses).
        features: The loss reads intermediate features (teacher features are then
            computed once in the driver and the student's are tapped in the trainer).
        teacher_layers: Teacher feature names the loss reads; None means "every
            feature the teacher exposes" (automatic layer mapping).
        student_layers: Student module paths the loss reads besides those the
            student exposes by default (from an explicit layer mapping).
    """

    logits: bool = True
    features: bool = False
    teacher_layers: tuple[str, ...] | None = None
    student_layers: tuple[str, ...] = ()


@dataclass
class ExportResult:
    """Outcome of exporting a student.

    Attributes:
        path: The written model file.
        max_abs_diff: Largest absolute difference between the exported model's and
            PyTorch's outputs on the check inputs.
        format: Short format name (``"onnx"``).
    """

    path: Path
    max_abs_diff: float
    format: str
