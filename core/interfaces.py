"""The small abstract interfaces every kdforge plugin implements.

Each plugin kind is one abstract base class. A plugin class declares:

* ``name`` and a docstring (its first line is the one-line description);
* ``Params``: a :class:`PluginParams` (pydantic) model of its config parameters, so
  the host validates ``<section>.params`` before anything runs and ``kdforge plugins
  show`` can list types and defaults;
* the abstract methods of its kind.

The host calls the methods in the order given in each class docstring.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from kdforge.data import (
    DataInfo,
    DataSplits,
    ExportResult,
    HParam,
    LossNeeds,
    LossResult,
    ModelOutput,
    TaskMetric,
)
from kdforge.errors import ConfigError
from kdforge.features import model_feature_names, predict_with_taps
from kdforge.wording import compact_params

if TYPE_CHECKING:
    import optuna

__all__ = [
    "OUTPUT_KINDS",
    "DatasetPlugin",
    "ExportResult",
    "Exporter",
    "HParam",
    "HeadedModel",
    "LossNeeds",
    "LossResult",
    "LossStrategy",
    "ModelOutput",
    "PluginParams",
    "PrefixedTrial",
    "SearchSpace",
    "Task",
    "Teacher",
]


#: What one row of model outputs can hold, by :attr:`Task.output_kind`.
OUTPUT_KINDS: dict[str, str] = {
    "class_logits": "one logit per class, read through a softmax (one label per example)",
    "label_logits": "one logit per label, each read through a sigmoid (several labels)",
    "values": "real-valued predictions (one per target)",
    "token_logits": "one logit per class at every input position (n, seq_len, classes), "
    "read through a softmax per position; positions whose target is -2 (padding, special "
    "tokens, later sub-tokens of a word) are neither scored nor distilled",
}

#: The output kinds a loss handles when it does not say (the classic softmax losses).
CLASS_LOGITS_ONLY: frozenset[str] = frozenset({"class_logits"})


def _takes_numbers_only(annotation: Any) -> bool:
    """True for a field of numbers (int, float, bool, unions of them) taking no string."""
    if annotation in (int, float, bool):
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _takes_numbers_only(args[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        takes_text = any(
            a is str
            or (
                typing.get_origin(a) is typing.Literal
                and any(isinstance(v, str) for v in typing.get_args(a))
            )
            or (isinstance(a, type) and issubclass(a, (str, Path)))
            for a in members
        )
        return not takes_text and any(a in (int, float, bool) for a in members)
    return False


def _refuse_quoted_number(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A pydantic ``before`` check: a string given for a number field is an error.

    pydantic would turn ``batch_size: '64'`` into 64; kdforge refuses it, so a value
    quoted by mistake (or a typo like ``'6 4'``) is reported, not guessed.
    """
    if isinstance(value, str) and info.field_name is not None:
        field = model.model_fields.get(info.field_name)
        if field is not None and _takes_numbers_only(field.annotation):
            raise ValueError(f"expected a number, not the string {value!r} (remove the quotes)")
    return value


class PluginParams(BaseModel):
    """Base of every plugin's ``Params`` model: unknown keys are errors.

    Number fields take numbers only: a quoted ``'64'`` is an error, not 64.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_strings(cls, value: Any, info: ValidationInfo) -> Any:
        return _refuse_quoted_number(cls, value, info)


class _Plugin(ABC):  # noqa: B024 - abstract methods come with each kind's subclass
    """Common part of all plugin classes."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[PluginParams]] = PluginParams

    def __init__(self, params: PluginParams | None = None) -> None:
        self.params = params if params is not None else self.Params()


class DatasetPlugin(_Plugin):
    """Provides the data a search distills on.

    Call order: ``__init__(params)`` in the driver, then ``load(seed)`` once per
    search (or teacher training). The splits are held in memory and shared with the
    trials through Ray's object store.
    """

    @abstractmethod
    def load(self, seed: int) -> DataSplits:
        """Return the train/val/test (and optional transfer) splits.

        Args:
            seed: Seed for any random split, so the same seed gives the same split.
        """


class Teacher(_Plugin):
    """A trained model whose outputs the student learns from.

    Call order: ``__init__(params)``, ``load()`` once in the driver, then
    ``predict`` on batches (the host caches its outputs per search), ``fingerprint``
    for cache keys, ``num_parameters`` for reports.
    """

    @abstractmethod
    def load(self) -> None:
        """Load the model (files are read with ``weights_only=True``)."""

    @abstractmethod
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """Run the teacher in eval mode without gradients on one batch."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the teacher's weights or architecture do."""

    @abstractmethod
    def num_parameters(self) -> int:
        """Number of parameters of the teacher."""

    def expected_input_shape(self) -> tuple[int, ...] | None:
        """Per-example input shape the teacher was built for, if known."""
        return None

    def expected_input_dtype(self) -> str | None:
        """``torch`` dtype name of the inputs the teacher reads (``"int64"`` for token
        ids, ``"float32"``), if known: the host refuses data of the other kind before
        running it."""
        return None

    def expected_num_classes(self) -> int | None:
        """Number of classes the teacher predicts, if known."""
        return None

    def torch_module(self) -> torch.nn.Module | None:
        """The torch model behind ``predict``, so the host can tap its features.

        The default returns the teacher's ``model`` or ``_model`` attribute when it is
        a ``torch.nn.Module``; override it when the model lives elsewhere, or return
        None when the teacher is not a torch model.
        """
        for attr in ("model", "_model"):
            candidate = getattr(self, attr, None)
            if isinstance(candidate, torch.nn.Module):
                return candidate
        return None

    def predict_features(self, x: torch.Tensor, names: Sequence[str] | None = None) -> ModelOutput:
        """``predict(x)`` plus named intermediate features (for feature-based losses).

        The default taps :meth:`torch_module` with forward hooks while ``predict``
        runs (see :mod:`kdforge.features`); features that ``predict`` itself returns
        (e.g. a transformer's hidden states) are kept and win on equal names.

        Args:
            x: One batch of inputs.
            names: Feature names to return; None returns every exposed feature.
        """
        return predict_with_taps(self, x, names)


class PrefixedTrial:
    """An Optuna trial whose ``suggest_*`` calls prefix the parameter names.

    The host samples a space's values as ``student/depth``; the ``choice`` space samples
    each member's as ``cnn.depth``. The space itself asks for ``depth`` either way.
    """

    def __init__(self, trial: Any, prefix: str) -> None:
        self._trial = trial
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if name.startswith("suggest_"):

            def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
                return attr(self._prefix + param, *args, **kwargs)

            return suggest
        return attr


class SearchSpace(_Plugin):
    """A family of student architectures.

    Call order: in the search driver, ``suggest(trial, info)`` samples one point
    define-by-run (conditional parameters allowed; the host prefixes the names with
    ``student/``); in the trial, ``build(arch, info)`` turns the sampled values (the
    dict of names without prefix, merged with whatever ``suggest`` returned) into a
    ``torch.nn.Module`` mapping inputs ``(n, *info.input_shape)`` to logits
    ``(n, info.num_classes)``. ``build`` is also used to rebuild checkpoints, so it
    must be deterministic given ``arch``.

    ``default_lr`` is the log-uniform learning-rate range a search uses when its config
    sets no ``search.lr`` (``None``: the config's default); see docs/search_spaces.md.

    An ``arch`` key whose name starts with ``_`` (e.g. a constant ``suggest`` returns
    only so that ``build`` can rebuild the model, like a long JSON recipe) is kept in
    checkpoints and ``best_config.yaml`` but not shown: leaderboards and MLflow params
    carry ``<name>_digest`` (12 hex digits of its SHA-256) instead (:meth:`shown_arch`).
    """

    default_lr: ClassVar[tuple[float, float] | None] = None
    #: Whether ``build`` gives one output row per input position ``(n, seq_len, K)``
    #: when the data asks for it (:attr:`DataInfo.per_position`, token tagging); the
    #: host refuses per-position data for a space that does not.
    per_position: bool = False
    #: Whether a position's output never depends on later positions (a causal mask);
    #: causal language modeling refuses a space that does not say so. A space whose
    #: students are causal or not depending on its params sets it on the instance.
    causal: bool = False
    #: Whether its students need the teacher's dense logits (a trimmed vocabulary
    #: renormalises them over its tokens): the host then refuses a per-position top-k
    #: teacher cache before the search starts. Set on the instance when params decide.
    needs_dense_teacher: bool = False

    @staticmethod
    def shown_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
        """``arch`` as leaderboards and tracking show it: ``_`` keys as short digests.

        A key's last dotted part decides (``pruned._recipe`` of the ``choice`` space too):
        ``_recipe`` is shown as ``recipe_digest``.
        """
        out: dict[str, Any] = {}
        for key, value in arch.items():
            head, dot, name = str(key).rpartition(".")
            if name.startswith("_"):
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                digest = hashlib.sha256(text.encode()).hexdigest()[:12]
                out[f"{head}{dot}{name.lstrip('_')}_digest"] = digest
            else:
                out[key] = value
        return out

    @abstractmethod
    def suggest(self, trial: optuna.Trial, info: DataInfo) -> dict[str, Any] | None:
        """Sample an architecture; may return extra constant entries for ``arch``."""

    @abstractmethod
    def build(self, arch: dict[str, Any], info: DataInfo) -> torch.nn.Module:
        """Build the model for one sampled architecture."""

    def bind_teacher(self, teacher: Teacher | None) -> None:
        """Optional: see the loaded teacher before sampling (e.g. to copy its layers).

        Called once in the driver after the teacher is loaded and before the search.
        The default does nothing.
        """

    def bind_data(self, splits: DataSplits) -> None:
        """Optional: see the (task-prepared) data before sampling, after :meth:`bind_teacher`.

        E.g. to keep the tokens the training corpus uses, or to score a teacher's units
        on a calibration batch. Whatever it keeps travels with the space to the trials,
        so keep it small. The default does nothing.
        """

    def describe(self, arch: dict[str, Any]) -> str:
        """A short description of one architecture for the leaderboard (one line).

        E.g. ``mlp 2x[64,32]`` or ``cnn 3x[16,32,32] k3``: depth, widths, kernel at a
        glance. The default renders the sampled values compactly
        (:func:`kdforge.wording.compact_params`); a space overrides it to say more
        with fewer characters. Rebuild-only keys (a name starting with ``_``) are left out.
        """
        shown = {k: v for k, v in arch.items() if not str(k).rpartition(".")[2].startswith("_")}
        return f"{self.name} {compact_params(shown)}".strip()

    def feature_names(self, arch: dict[str, Any], info: DataInfo) -> list[str]:
        """Module paths of the intermediate features a built model exposes, shallow first.

        Feature-based losses read these and map teacher layers to them. The default
        builds the model and asks :func:`kdforge.features.model_feature_names`.
        """
        return model_feature_names(self.build(arch, info))


class LossStrategy(_Plugin):
    """A distillation loss.

    ``hyperparameters`` declares what the search samples for this loss; the sampled
    values are passed to ``__init__`` as ``hparams``. Call order in a trial:
    ``__init__(params, hparams)`` once, then ``bind(student, teacher)`` once with
    the outputs of one batch (create learnable parts such as adapters there; the
    trainer optimises what ``parameters()`` returns together with the student),
    then ``__call__`` on every batch.
    Labels equal to ``-1`` mark unlabeled examples and must not enter label terms.

    ``needs_logits`` / ``needs_features`` say what the loss reads, so the driver
    computes teacher features only when some loss needs them; a loss whose needs
    depend on its params overrides :meth:`needs`.
    """

    hyperparameters: ClassVar[tuple[HParam, ...]] = ()
    needs_logits: ClassVar[bool] = True
    needs_features: ClassVar[bool] = False
    #: The :data:`OUTPUT_KINDS` this loss makes sense for; the host refuses another
    #: task's outputs before training, naming the loss and the task.
    output_kinds: ClassVar[frozenset[str]] = CLASS_LOGITS_ONLY
    #: The search's task, set by the host before ``bind``; None means classification.
    task: Task | None = None

    @classmethod
    def supported_output_kinds(cls, params: PluginParams | None) -> frozenset[str]:
        """The output kinds this loss handles, given its params (default: ``output_kinds``).

        A loss built of other losses (``composite``) answers with what all its parts take.
        """
        return cls.output_kinds

    @classmethod
    def declared_hyperparameters(cls, params: PluginParams | None) -> tuple[HParam, ...]:
        """The searchable hyperparameters for these params (default: ``hyperparameters``).

        A loss whose hyperparameters depend on its params (e.g. ``composite``)
        overrides this. A declared range with ``low == high`` is a fixed value.
        """
        return cls.hyperparameters

    @classmethod
    def needs(cls, params: PluginParams | None) -> LossNeeds:
        """What this loss reads from teacher and student, given its params."""
        return LossNeeds(logits=cls.needs_logits, features=cls.needs_features)

    @classmethod
    def reads_top_k(cls, params: PluginParams | None) -> bool:
        """Whether this loss reads per-position teacher logits in the sparse top-k form
        (:class:`~kdforge.data.TopKLogits`, from ``teacher_cache.top_k``).

        Default: only a loss that reads no teacher logits at all; a loss that handles
        the sparse form (``lm_kd``) answers True.
        """
        return not cls.needs(params).logits

    def __init__(
        self, params: PluginParams | None = None, hparams: dict[str, float] | None = None
    ) -> None:
        super().__init__(params)
        values = {hp.name: hp.default for hp in self.declared_hyperparameters(self.params)}
        values.update(hparams or {})
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise ConfigError(
                f"loss {self.name!r} needs values for {missing}: they have no default",
                hint=f"give them under loss.hparams ({', '.join(missing)})",
            )
        self.hparams: dict[str, float] = {k: float(v) for k, v in values.items() if v is not None}

    def bind(self, student: ModelOutput, teacher: ModelOutput) -> None:
        """Prepare for training from one batch's outputs (shapes known); default: nothing."""

    def label_loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task's loss on the labeled rows of a batch (the hard-label term).

        Without a task (a loss used on its own) this is cross-entropy over the rows
        whose label is not ``-1`` (per-position logits ``(n, T, K)``: over the positions
        whose tag is ``>= 0``).
        """
        if self.task is not None:
            return self.task.label_loss(outputs, labels)
        if outputs.dim() == 3:  # per-position logits: -1 and -2 (no word) alike ignored
            outputs, labels = outputs.reshape(-1, outputs.shape[-1]), labels.reshape(-1)
            labels = labels.clamp_min(-1)
        total = torch.nn.functional.cross_entropy(outputs, labels, ignore_index=-1, reduction="sum")
        return total / (labels != -1).sum().clamp_min(1)

    def soft_target(self, outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The teacher's ``outputs`` as the task's soft target (softmax at T without a task)."""
        if self.task is not None:
            return self.task.soft_target(outputs, temperature)
        return torch.softmax(outputs / temperature, dim=-1)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Learnable parameters of the loss (e.g. adapters), optimised with the student."""
        return []

    @abstractmethod
    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Compute the loss of one batch."""


class Task(_Plugin):
    """What the models predict and how that is scored: classification, regression, ...

    A task owns everything that depends on the kind of target: the shape and dtype of
    the targets, the number of model outputs, the loss on the labels, how a teacher's
    outputs become soft targets, the metrics (one of them chosen for early stopping
    and selection, with its direction) and what a served model returns.

    Targets: ``Split.y`` holds one row per example in the task's form (classification:
    int64 class ids with ``-1`` for "no label"; real-valued and multi-label tasks:
    float32 ``(n, outputs)`` with a row of NaN for "no label").

    Call order: ``__init__(params)`` in the driver, then ``check(splits)`` and
    ``prepare(splits)`` once (a task may learn statistics from the training targets
    there: ``state()`` returns them so that trial processes, checkpoints and exports
    rebuild the same task with ``load_state``); then ``label_loss``, ``soft_target``
    and ``metrics`` inside trials, and ``output_head`` at export.

    Attributes:
        output_kind: What one row of model outputs holds, one of :data:`OUTPUT_KINDS`;
            a loss declares the kinds it handles (``LossStrategy.output_kinds``).
        metric: Name of the metric that early stopping and selection use (``"acc"``:
            the search reports ``val_acc`` and ``test_acc``).
        higher_is_better: Direction of ``metric``.
        metric_names: Every metric :meth:`metrics` returns (``metric`` among them).
    """

    output_kind: ClassVar[str] = "class_logits"
    metric: ClassVar[str] = "acc"
    higher_is_better: ClassVar[bool] = True
    metric_names: ClassVar[tuple[str, ...]] = ("acc",)
    #: What a trial that never finished an epoch reports for ``metric``: a finite value
    #: no trained model should be worse than (0 accuracy; a lower-is-better metric sets
    #: a large one).
    metric_failed_value: ClassVar[float] = 0.0
    #: The loss a search uses when its config names none (a loss for this output kind).
    default_loss: ClassVar[str] = "hinton_kd"
    #: The name of the exported model's output, and so of the served answer's key.
    output_name: ClassVar[str] = "logits"

    def state(self) -> dict[str, Any]:
        """JSON-able statistics learned by :meth:`prepare` (default: none)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned, in another process (default: nothing)."""

    @abstractmethod
    def num_outputs(self, info: DataInfo) -> int:
        """Number of model outputs per example for this data."""

    @abstractmethod
    def check(self, splits: DataSplits) -> None:
        """Raise :class:`~kdforge.errors.DataError` naming the split when its targets do
        not fit this task (wrong dtype, shape or values)."""

    def prepare(self, splits: DataSplits) -> DataSplits:
        """Return the splits the models train on (default: unchanged)."""
        return splits

    def prepare_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Teacher outputs in the units the student trains in (default: unchanged).

        A regression task that standardises its targets standardises a teacher's
        predictions the same way, so that both sides of a distillation loss agree.
        """
        return outputs

    @abstractmethod
    def labeled(self, targets: torch.Tensor) -> torch.Tensor:
        """Boolean mask ``(n,)`` of the rows that carry a label."""

    @abstractmethod
    def label_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss over the labeled rows of a batch; 0 (not NaN) when none is."""

    @abstractmethod
    def soft_target(self, outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The teacher's outputs as targets for the student, at ``temperature``."""

    @abstractmethod
    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Every metric in :attr:`metric_names` over the labeled rows (NaN when none)."""

    @property
    def selection_metric(self) -> TaskMetric:
        """:attr:`metric` and its direction, as the search names and ranks it."""
        return TaskMetric(self.metric, self.higher_is_better, self.metric_failed_value)

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` beats ``b`` (NaN never beats anything)."""
        if a != a:  # NaN
            return False
        if b != b:
            return True
        return a > b if self.higher_is_better else a < b

    @property
    def worst(self) -> float:
        """A value of :attr:`metric` that every real value beats."""
        return float("-inf") if self.higher_is_better else float("inf")

    def output_head(self) -> torch.nn.Module | None:
        """A module appended to a trained model so that it answers in the data's own
        units (default: None, the raw outputs). It is part of saved checkpoints, exported
        and served models; it must not squash logits (teachers are rebuilt with it)."""
        return None

    def needs_causal_student(self) -> bool:
        """Whether a student must not see later positions (causal language modeling);
        the search refuses a space that does not say ``SearchSpace.causal``."""
        return False

    def output_scale(self) -> float:
        """How much :meth:`output_head` magnifies an output's error (default 1.0): the
        ONNX parity tolerance, given in the units the student trains in, is multiplied
        by it for the exported model, which answers in the data's units."""
        return 1.0

    def record(self) -> dict[str, Any]:
        """What rebuilds this task elsewhere: name, params and :meth:`state` (plain values)."""
        return {
            "name": self.name,
            "params": self.params.model_dump(mode="json"),
            "state": self.state(),
        }

    def with_head(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` followed by :meth:`output_head` (``model`` itself when there is none)."""
        head = self.output_head()
        return model if head is None else HeadedModel(model, head)


class HeadedModel(torch.nn.Module):
    """A trained model followed by its task's output head (see :meth:`Task.output_head`).

    Attributes:
        body: The model as trained.
        head: The task's head (e.g. undoing the standardisation of regression targets).
    """

    def __init__(self, body: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``head(body(x))``."""
        return self.head(self.body(x))


class Exporter(_Plugin):
    """Writes a trained student to a deployable format and checks it.

    Call order: ``export(model, example, path)`` once, after the search, on the CPU.
    """

    suffix: ClassVar[str] = ""

    @abstractmethod
    def export(self, model: torch.nn.Module, example: torch.Tensor, path: Path) -> ExportResult:
        """Export ``model`` to ``path`` and compare it with PyTorch on ``example``."""
