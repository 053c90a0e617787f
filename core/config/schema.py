"""YAML configuration files, validated into typed objects.

Two file kinds exist: a *search* config (``kdforge search``) and a *teacher* config
(``kdforge train-teacher``). Every key is documented in ``docs/config.md``. Errors
name the key path, the bad value and what was expected, and suggest the closest key
for misspellings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdforge.config.objective_settings import (
    ConstraintSettings,
    LatencySettings,
    ObjectiveSpec,
    check_objectives,
    default_objectives,
)
from kdforge.config.quantize_settings import QuantizeSettings
from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.errors import ConfigError, closest_match

__all__ = [
    "DEFAULT_TRACKING_URI",
    "BaselineSettings",
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
    "load_config",
    "load_search_config",
    "load_teacher_config",
    "resolve_tracking_uri",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    grace_period: int = Field(3, ge=1, description="ASHA: epochs before a trial can be stopped.")
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
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs reserved per trial.")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial (fractions allowed).")
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
        1e-4, gt=0, description="Max abs difference allowed between exported model and PyTorch."
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
        description="'accuracy': best validation accuracy (fewer params break ties); "
        "'smallest_within': fewest params within `tolerance` of the best accuracy; "
        "'most_accurate_under': best accuracy within the max_* limits below.",
    )
    tolerance: float = Field(
        0.01, ge=0, le=1, description="Accuracy slack for 'smallest_within' (0.01 = 1 point)."
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
    """The from-scratch baseline that measures the distillation gain."""

    enabled: bool = Field(True, description="Train the chosen architecture without the teacher.")
    seeds: int = Field(3, ge=1, description="Seeds for both the distilled and scratch runs.")


class SearchConfig(_Strict):
    """A ``kdforge search`` configuration file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Search name.")
    seed: int = Field(0, description="Seed of the data split, the sampler and the trials.")
    output_dir: str = Field("kdforge-runs", description="Where search folders are written.")
    dataset: PluginRef = Field(description="Dataset plugin.")
    teacher: PluginRef = Field(description="Teacher plugin.")
    student: StudentConfig = Field(description="Student search space plugin.")
    loss: LossConfig = Field(
        default_factory=lambda: LossConfig(name="hinton_kd"), description="Distillation loss."
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
        description="What the search optimises: a list of {name, mode}, names among val_acc, "
        "params, macs, size_bytes, latency_ms, latency_batch_ms; several give a Pareto front "
        "(docs/search_spaces.md).",
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

    @field_validator("objectives")
    @classmethod
    def _check_objectives(cls, value: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        return check_objectives(value)

    @field_validator("search")
    @classmethod
    def _grace_le_epochs(cls, value: SearchSettings) -> SearchSettings:
        if value.grace_period > value.epochs:
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
    seed: int = Field(0, description="Seed of the data split and the training.")
    dataset: PluginRef = Field(description="Dataset plugin (same split rules as the search).")
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


_M = TypeVar("_M", bound=BaseModel)


def load_config(path: str | Path, model: type[_M], overrides: dict[str, Any] | None = None) -> _M:
    """Read a YAML file and validate it into ``model``.

    Args:
        path: The YAML file.
        model: The pydantic model to validate into.
        overrides: Dotted keys to set after reading (e.g. ``{"search.num_trials": 3}``).

    Raises:
        ConfigError: unreadable file, invalid YAML, or invalid content (naming the key).
    """
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config file not found: {file}")
    if file.is_dir():
        raise ConfigError(f"config path is a directory, expected a YAML file: {file}")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return validate_config(raw, model, source=str(file))


def validate_config(raw: dict[str, Any], model: type[_M], source: str = "config") -> _M:
    """Validate a mapping into ``model``, turning pydantic errors into a ConfigError."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, raw, source)) from None


def load_search_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """Read and validate a search config (see :func:`load_config`)."""
    return load_config(path, SearchConfig, overrides)


def load_teacher_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TeacherConfig:
    """Read and validate a teacher-training config (see :func:`load_config`)."""
    return load_config(path, TeacherConfig, overrides)


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], raw: Any, source: str, prefix: str = ""
) -> str:
    """One readable line per problem: key path, bad value, expectation, suggestion.

    Args:
        exc: The pydantic error.
        model: The model validated against (for "did you mean" suggestions).
        raw: The raw input.
        source: Where the input came from (a file name), or "" for none.
        prefix: Key path of ``raw`` inside the whole config (e.g. ``student.params``).
    """
    lines = []
    by_key: dict[str, str] = {}
    for err in exc.errors():
        # Drop pydantic's union-branch labels ("float", "function-after[...]") from paths.
        parts = _clean_loc(err["loc"], raw)
        loc = [*([prefix] if prefix else []), *parts]
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[1 if prefix else 0 : -1])
            suggestion = closest_match(loc[-1], allowed) if allowed else None
            msg = f"{key}: unknown key"
            if suggestion:
                msg += f" (did you mean {'.'.join([*loc[:-1], suggestion])!r}?)"
            elif allowed:
                msg += f"; allowed: {', '.join(sorted(allowed))}"
        elif kind == "missing":
            msg = f"{key}: required key is missing"
        else:
            text = err["msg"]
            if text.startswith("Value error, "):
                text = text[len("Value error, ") :]
            msg = f"{key}: {text}"
            if "input" in err and kind != "model_type":
                msg += f" (got {err['input']!r})"
        # For a union (a number or a range) keep the most specific complaint per key.
        if key in by_key and kind != "value_error":
            continue
        by_key[key] = msg
    lines = list(by_key.values())
    return (f"{source}: " if source else "") + "; ".join(lines)


def _is_branch_label(part: str) -> bool:
    return "[" in part or part in {"float", "int", "str", "bool", "list", "dict", "Range"}


def _clean_loc(loc: tuple[Any, ...], raw: Any) -> list[str]:
    """The error's key path with pydantic's union-branch labels removed.

    A part is dropped only when it looks like a branch label *and* is not a key of the
    input at that point (a user may well have written a key called ``[`` or ``float``).
    """
    parts: list[str] = []
    node = raw
    for item in loc:
        text = str(item)
        in_dict = isinstance(node, dict) and item in node
        in_list = isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node)
        if in_dict or in_list:
            parts.append(text)
            node = node[item]  # type: ignore[index]
        elif _is_branch_label(text):
            continue
        else:
            parts.append(text)
            node = None
    return parts


def _allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
        args = getattr(current, "__args__", None)
        if args:
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            current = models[0] if models else current
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
