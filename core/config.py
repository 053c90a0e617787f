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

from kdforge.errors import ConfigError, closest_match

__all__ = [
    "BaselineSettings",
    "ExportSettings",
    "LossConfig",
    "PluginRef",
    "Range",
    "SearchConfig",
    "SearchSettings",
    "SelectionSettings",
    "TeacherConfig",
    "TrackingSettings",
    "load_config",
    "load_search_config",
    "load_teacher_config",
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


class SearchSettings(_Strict):
    """How the search runs."""

    num_trials: int = Field(16, ge=1, description="Number of trials (students) to try.")
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
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler.")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs reserved per trial.")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial (fractions allowed).")
    address: str | None = Field(
        None, description="Ray cluster address to join (default: start a local Ray)."
    )


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


class SelectionSettings(_Strict):
    """How the student to export is chosen among finished trials."""

    rule: Literal["accuracy", "smallest_within"] = Field(
        "accuracy",
        description="'accuracy': best validation accuracy (fewer params break ties); "
        "'smallest_within': fewest params within `tolerance` of the best accuracy.",
    )
    tolerance: float = Field(
        0.01, ge=0, le=1, description="Accuracy slack for 'smallest_within' (0.01 = 1 point)."
    )


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
    student: PluginRef = Field(description="Student search space plugin.")
    loss: LossConfig = Field(
        default_factory=lambda: LossConfig(name="hinton_kd"), description="Distillation loss."
    )
    search: SearchSettings = Field(default_factory=SearchSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    baseline: BaselineSettings = Field(default_factory=BaselineSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)

    @field_validator("search")
    @classmethod
    def _grace_le_epochs(cls, value: SearchSettings) -> SearchSettings:
        if value.grace_period > value.epochs:
            raise ValueError(
                f"grace_period ({value.grace_period}) must not exceed epochs ({value.epochs})"
            )
        return value

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
    training: TeacherTraining = Field(default_factory=TeacherTraining)
    output: str = Field(description="Path of the checkpoint file to write.")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    registered_model_name: str | None = Field(
        None, description="Also register the teacher in the MLflow Model Registry under this name."
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
        raise ConfigError(f"{file}: the top level must be a mapping of keys, got {type(raw).__name__}")
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
    exc: ValidationError, model: type[BaseModel], raw: Any, source: str
) -> str:
    """One readable line per problem: key path, bad value, expectation, suggestion."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
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
        lines.append(msg)
    return f"{source}: " + "; ".join(lines)


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
