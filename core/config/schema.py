"""The typed shape of the config files (every key is documented in ``docs/config.md``).

Two file kinds exist: a *search* config (``kdforge search``) and a *teacher* config
(``kdforge train-teacher``). :mod:`kdforge.config.loading` reads and validates them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kdforge.config.objective_settings import (
    ConstraintSettings,
    LatencySettings,
    ObjectiveSpec,
    check_objectives,
    default_objectives,
)
from kdforge.config.quantize_settings import QuantizeSettings
from kdforge.config.storage_settings import StorageSettings
from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.config.teacher_inference_settings import TeacherInferenceSettings
from kdforge.interfaces import _refuse_quoted_number

__all__ = [
    "DEFAULT_TRACKING_URI",
    "BaselineSettings",
    "DatasetRef",
    "ExportSettings",
    "LossConfig",
    "PluginRef",
    "Range",
    "SearchConfig",
    "SearchSettings",
    "SelectionSettings",
    "StudentConfig",
    "TeacherConfig",
    "TrackingSettings",
    "resolve_tracking_uri",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A quoted number (``batch_size: '64'``) is an error, not converted.
    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_strings(cls, value: Any, info: ValidationInfo) -> Any:
        return _refuse_quoted_number(cls, value, info)


class Range(_Strict):
    """A search range for one float hyperparameter."""

    low: float = Field(description="Lower bound (inclusive).")
    high: float = Field(description="Upper bound (inclusive).")
    log: bool = Field(False, description="Sample on a log scale (needs low > 0).")

    @model_validator(mode="after")
    def _check_bounds(self) -> Range:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        return self


class PluginRef(_Strict):
    """Which plugin to use and its parameters."""

    name: str = Field(description="Registered plugin name (see `kdforge plugins`).")
    params: dict[str, Any] = Field(default_factory=dict, description="The plugin's parameters.")
    # Where the params came from: the config file, and the `--set` keys that changed
    # them. The plugin validates its params later, and its errors must name their source.
    _origin: tuple[str, dict[str, str]] = PrivateAttr(default=("", {}))

    @property
    def origin(self) -> tuple[str, dict[str, str]]:
        """``(file, {dotted key: "--set KEY"})``: where :attr:`params` came from."""
        return self._origin

    def set_origin(self, source: str, blame: dict[str, str]) -> None:
        """Record where this section came from (done by the config loader)."""
        self._origin = (source, dict(blame))


class TeacherRef(PluginRef):
    """The teacher plugin, and which split it never trained on."""

    held_out: Literal["val", "test"] = Field(
        "val",
        description="The split the teacher never trained on; its accuracy there is the "
        "teacher's reference (reports, plots). 'test' when the teacher was trained or "
        "fine-tuned on the rows kdforge carves validation from (its val_acc is then "
        "inflated, and the val/test gap warning is off).",
    )


class DatasetRef(PluginRef):
    """The dataset plugin, its parameters and the seed of its train/val/test split."""

    split_seed: int = Field(
        0,
        description="Seed of the train/val/test split, apart from `seed`: searches with any "
        "seed, the teacher and the registered students then test on the same rows.",
    )


class LossConfig(PluginRef):
    """The distillation loss, and how its hyperparameters are searched."""

    hparams: dict[str, float | Range] = Field(
        default_factory=dict,
        description="Per hyperparameter: a number fixes it; {low, high, log} overrides its range.",
    )


class StudentConfig(PluginRef):
    """The student search space, or one fixed architecture of it."""

    fixed: dict[str, Any] | None = Field(
        None,
        description="A fixed architecture (the values the space samples, e.g. depth, width_0): "
        "every trial builds it, nothing is sampled (see best_config.yaml).",
    )


class SearchSettings(_Strict):
    """How the search runs."""

    num_trials: int = Field(16, ge=1, description="Number of trials (students) to try.")
    initial_points: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Configurations the first trials evaluate, in order, each "
        "{student: {...}, loss: {...}, lr: ...}; a value left out is sampled "
        "(docs/search_spaces.md). Each point is one of the num_trials trials.",
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="Stop starting trials after this many seconds."
    )
    max_concurrent: int | None = Field(
        None, ge=1, description="Trials at once (default: as many as the CPUs hold)."
    )
    epochs: int = Field(30, ge=1, description="Training epochs of a trial that is not stopped.")
    grace_period: int | None = Field(
        None,
        ge=1,
        description="ASHA: epochs before a trial can be stopped (default: a quarter of "
        "epochs, at least 1 and at most 3, so short smoke runs work). An explicit value "
        "above epochs is an error.",
    )
    reduction_factor: float = Field(3.0, gt=1, description="ASHA reduction factor.")
    batch_size: int = Field(64, ge=1, description="Training batch size.")
    lr: Range = Field(
        default_factory=lambda: Range(low=3e-4, high=3e-2, log=True),
        description="Learning-rate range (AdamW).",
    )
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    sampler: Literal["auto", "tpe", "random", "nsga2"] = Field(
        "auto",
        description="Optuna sampler; 'auto': TPE for one objective, NSGA-II for several.",
    )
    cpus_per_trial: float = Field(
        1.0, gt=0, description="CPUs reserved per trial (per worker of a multi-worker trial)."
    )
    gpus_per_trial: float = Field(
        0.0,
        ge=0,
        description="GPUs per trial (fractions allowed up to 1). Above 1 (a whole number) the "
        "trial is data-parallel, one worker per GPU unless workers_per_trial says otherwise "
        "(docs/scale.md).",
    )
    workers_per_trial: int | None = Field(
        None,
        ge=1,
        description="Data-parallel workers (processes) per trial, each training on its share "
        "of every batch with gradients all-reduced (default: 1, or one per GPU when "
        "gpus_per_trial > 1). batch_size stays the global batch; it must divide by the "
        "workers.",
    )
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="How a multi-worker trial shares the student: 'ddp' (every worker holds "
        "all weights) or 'fsdp' (weights, gradients and optimizer state sharded, for "
        "students too large for one device).",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Training precision on CUDA (bf16/fp16 autocast); CPU trains in fp32."
    )
    max_failures: int | None = Field(
        None,
        ge=1,
        description="Stop the search once this many trials failed "
        "(default: half of num_trials, at least 3).",
    )
    address: str | None = Field(
        None, description="Ray cluster address to join (default: start a local Ray)."
    )

    @model_validator(mode="after")
    def _check_workers(self) -> SearchSettings:
        workers = self.trial_workers
        gpus = self.gpus_per_trial
        if gpus > 1 and gpus != int(gpus):
            raise ValueError(
                f"gpus_per_trial ({gpus:g}) above 1 must be a whole number of GPUs "
                "(one per data-parallel worker)"
            )
        if workers > 1 and gpus > 0 and (gpus < workers or gpus % workers):
            raise ValueError(
                f"gpus_per_trial ({gpus:g}) must be a whole multiple of workers_per_trial "
                f"({workers}): each worker of a multi-worker trial needs whole GPUs of its own"
            )
        if self.batch_size % workers:
            raise ValueError(
                f"batch_size ({self.batch_size}) must divide by workers_per_trial ({workers}): "
                "every worker trains on an equal share of each batch"
            )
        return self

    @property
    def trial_workers(self) -> int:
        """Data-parallel workers per trial: ``workers_per_trial``, else one per GPU above 1."""
        if self.workers_per_trial is not None:
            return self.workers_per_trial
        return int(self.gpus_per_trial) if self.gpus_per_trial > 1 else 1

    @property
    def grace_epochs(self) -> int:
        """``grace_period``, or by default a quarter of ``epochs`` clamped to 1..3."""
        if self.grace_period is not None:
            return self.grace_period
        return _default_grace_period(self.epochs)


def _default_grace_period(epochs: int) -> int:
    """ASHA's grace period when none is set: ``epochs // 4`` clamped to 1..3.

    Three epochs tell a hopeless student from a slow starter in a long search; a short
    run (``epochs: 2``) must not ask for more epochs than it has.
    """
    return min(3, max(1, epochs // 4))


#: MLflow's own default store: a SQLite file in the working directory.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI to use: the given one or the local SQLite default.

    A relative SQLite path is made absolute against the current directory, so every
    process (and a later ``kdforge resume``) writes to the same file.
    """
    chosen = uri or DEFAULT_TRACKING_URI
    if chosen.startswith("sqlite:///") and not chosen.startswith("sqlite:////"):
        relative = chosen[len("sqlite:///") :]
        chosen = "sqlite:///" + str(Path(relative).resolve())
    return chosen


class TrackingSettings(_Strict):
    """Where results are tracked."""

    uri: str | None = Field(
        None, description="MLflow tracking URI (default: sqlite:///mlflow.db in the cwd)."
    )
    experiment: str = Field("kdforge", min_length=1, description="MLflow experiment name.")


class ExportSettings(_Strict):
    """Export and registration of the best student."""

    enabled: bool = Field(True, description="Export and register the best student.")
    exporter: str = Field("onnx", description="Exporter plugin name.")
    tolerance: float = Field(
        1e-4,
        gt=0,
        description="Max abs difference allowed between exported model and PyTorch, in the "
        "units the student trains in (standard deviations of the targets for regression).",
    )
    registered_model_name: str | None = Field(
        None, description="Model Registry name (default: '<name>-student')."
    )
    alias: str = Field("champion", min_length=1, description="Registry alias for the new version.")
    promote: Literal["always", "if_better"] = Field(
        "always",
        description="'always': the alias moves to the new version; 'if_better': only if it "
        "beats the alias's current version on this search's test split (both run as ONNX).",
    )


class SelectionSettings(_Strict):
    """How the student to export is chosen among finished trials."""

    rule: Literal["accuracy", "smallest_within", "most_accurate_under"] = Field(
        "accuracy",
        description="'accuracy': best validation value of the task's metric (accuracy for "
        "classification; fewer params break ties); 'smallest_within': fewest params within "
        "`tolerance` of the best; 'most_accurate_under': the best within the max_* limits below.",
    )
    tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Slack in the task's metric for 'smallest_within' (0.01 = 1 point of "
        "accuracy, or of R²).",
    )
    max_latency_ms: float | None = Field(
        None, gt=0, description="'most_accurate_under': slowest ONNX batch-1 latency (ms)."
    )
    max_params: int | None = Field(None, ge=1, description="'most_accurate_under': most params.")
    max_macs: int | None = Field(None, ge=1, description="'most_accurate_under': most MACs.")
    max_size_bytes: int | None = Field(
        None, ge=1, description="'most_accurate_under': most bytes of weights."
    )

    @model_validator(mode="after")
    def _limits_for_rule(self) -> SelectionSettings:
        if self.rule == "most_accurate_under" and not self.limits():
            raise ValueError(
                "rule 'most_accurate_under' needs at least one of max_latency_ms, max_params, "
                "max_macs, max_size_bytes"
            )
        return self

    def limits(self) -> dict[str, float]:
        """The set ``max_*`` limits, keyed by the metric they bound (``latency_ms``, ...)."""
        pairs = {
            "params": self.max_params,
            "macs": self.max_macs,
            "size_bytes": self.max_size_bytes,
            "latency_ms": self.max_latency_ms,
        }
        return {k: float(v) for k, v in pairs.items() if v is not None}


class BaselineSettings(_Strict):
    """The from-scratch baseline that measures the distillation gain.

    The chosen trial's architecture is trained again with each seed, once distilled
    (its loss hyperparameters) and once from scratch (labels only, no teacher-layer
    initialisation). Both sides use the chosen trial's learning rate, epochs and batch
    size, so they differ in the teacher alone; the learning rate was tuned for the
    distilled student, which is the fair, stated choice (report.md says so too).
    """

    enabled: bool = Field(True, description="Train the chosen architecture without the teacher.")
    seeds: int = Field(3, ge=1, description="Seeds for both the distilled and scratch runs.")


class SearchConfig(_Strict):
    """A ``kdforge search`` configuration file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Search name.")
    seed: int = Field(
        0, description="Seed of the sampler and the trials (the split has dataset.split_seed)."
    )
    output_dir: str = Field("kdforge-runs", description="Where search folders are written.")
    dataset: DatasetRef = Field(description="Dataset plugin.")
    task: PluginRef | None = Field(
        None,
        description="Task plugin (classification, regression, multilabel, ...) with its "
        "params; default: the task the dataset's targets are for (docs/tasks.md).",
    )
    teacher: TeacherRef = Field(description="Teacher plugin.")
    student: StudentConfig = Field(
        description="Student search space plugin; a list of them is short for the `choice` "
        "space (the search picks among them, docs/search_spaces.md)."
    )
    loss: LossConfig = Field(
        default_factory=lambda: LossConfig(name="hinton_kd"),
        description="Distillation loss; without this section, the task's own (hinton_kd for "
        "classification, regression_kd for regression, multilabel_kd for multilabel).",
    )
    search: SearchSettings = Field(default_factory=lambda: SearchSettings())
    selection: SelectionSettings = Field(default_factory=lambda: SelectionSettings())
    baseline: BaselineSettings = Field(default_factory=lambda: BaselineSettings())
    tracking: TrackingSettings = Field(default_factory=lambda: TrackingSettings())
    export: ExportSettings = Field(default_factory=lambda: ExportSettings())
    quantize: QuantizeSettings = Field(
        default_factory=lambda: QuantizeSettings(),
        description="Optional int8 quantization of the exported student.",
    )
    objectives: list[ObjectiveSpec] = Field(
        default_factory=default_objectives,
        description="What the search optimises: a list of {name, mode}, names among the "
        "task's metric (val_acc for classification, val_r2, val_map, ...; the default "
        "objective), params, macs, size_bytes, latency_ms, latency_batch_ms; several give a "
        "Pareto front (docs/search_spaces.md).",
    )
    constraints: ConstraintSettings = Field(
        default_factory=lambda: ConstraintSettings(),
        description="Limits checked before training; violating students are rejected.",
    )
    latency: LatencySettings = Field(
        default_factory=lambda: LatencySettings(), description="How latency is measured."
    )
    teacher_cache: TeacherCacheSettings = Field(
        default_factory=lambda: TeacherCacheSettings.model_validate({}),
        description="Teacher outputs cached on disk and reused by later searches.",
    )
    teacher_inference: TeacherInferenceSettings = Field(
        default_factory=lambda: TeacherInferenceSettings.model_validate({}),
        description="Where the teacher's outputs are computed when not cached (in the search "
        "process, or as a Ray job on the cluster's workers).",
    )
    storage: StorageSettings = Field(
        default_factory=lambda: StorageSettings(),
        description="Object storage for s3:// URIs in output_dir, teacher_cache.dir and "
        "dataset paths (docs/scale.md).",
    )

    @field_validator("student", mode="before")
    @classmethod
    def _student_list_is_a_choice(cls, value: Any) -> Any:
        # `student: [{name: pruned}, {name: cnn}]` searches over both spaces.
        if isinstance(value, list):
            return {"name": "choice", "params": {"spaces": value}}
        return value

    @field_validator("objectives")
    @classmethod
    def _check_objectives(cls, value: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        return check_objectives(value)

    @field_validator("search")
    @classmethod
    def _grace_le_epochs(cls, value: SearchSettings) -> SearchSettings:
        if value.grace_period is not None and value.grace_period > value.epochs:
            raise ValueError(
                f"grace_period ({value.grace_period}) must not exceed epochs ({value.epochs})"
            )
        return value

    @property
    def failure_budget(self) -> int:
        """Failed trials after which the search stops (``search.max_failures``)."""
        settings = self.search
        return settings.max_failures or max(3, settings.num_trials // 2)

    @property
    def registered_model_name(self) -> str:
        """The Model Registry name the best student is registered under."""
        return self.export.registered_model_name or f"{self.name}-student"


class TeacherTraining(_Strict):
    """Training settings of ``kdforge train-teacher``."""

    epochs: int = Field(60, ge=1, description="Training epochs.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(64, ge=1, description="Batch size.")


class TeacherConfig(_Strict):
    """A ``kdforge train-teacher`` configuration file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Teacher name.")
    seed: int = Field(0, description="Seed of the training (the split has dataset.split_seed).")
    dataset: DatasetRef = Field(description="Dataset plugin (same split rules as the search).")
    task: PluginRef | None = Field(
        None,
        description="Task plugin (classification, regression, multilabel, ...) with its "
        "params; default: the task the dataset's targets are for (docs/tasks.md).",
    )
    architecture: PluginRef = Field(
        description="Search-space plugin name and fixed `params` = the architecture to build."
    )
    training: TeacherTraining = Field(default_factory=lambda: TeacherTraining())
    output: str = Field(description="Path of the checkpoint file to write.")
    tracking: TrackingSettings = Field(default_factory=lambda: TrackingSettings())
    registered_model_name: str | None = Field(
        None, description="Also register the teacher in the MLflow Model Registry under this name."
    )
    registered_model_alias: str = Field(
        "champion",
        min_length=1,
        description="Registry alias set on the new teacher version (use models:/NAME@ALIAS).",
    )
