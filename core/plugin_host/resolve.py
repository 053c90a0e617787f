"""Turn config references (``name`` + ``params``) into plugin instances.

Parameter validation happens here, so a bad plugin parameter is reported with its
full key path (e.g. ``student.params.max_depth``) before anything runs.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError
from torch import nn

from kdforge.checkpoint import checkpoint_info
from kdforge.config import LossConfig, PluginRef, Range, format_validation_error
from kdforge.errors import CheckpointError, ConfigError, closest_match, first_line
from kdforge.interfaces import HParam, LossNeeds, LossStrategy, PluginParams, Task
from kdforge.plugin_host.manager import PluginRecord, get_registry

__all__ = [
    "build_checkpoint_model",
    "check_loss_fits_task",
    "instantiate",
    "loss_hparams",
    "loss_needs",
    "rebuild_task",
    "validate_params",
]

_T = TypeVar("_T")


def validate_params(
    record: PluginRecord,
    params: dict[str, Any],
    key: str,
    origin: tuple[str, dict[str, str]] = ("", {}),
) -> PluginParams:
    """Validate ``params`` against the plugin's ``Params`` model.

    Args:
        record: The plugin.
        params: Raw parameters from the config.
        key: Config key path of the plugin section (for error messages).
        origin: Where the section came from (:attr:`PluginRef.origin`): a problem is
            blamed on ``--set KEY`` when that key set it, else on the file.
    """
    model = record.cls.Params
    source, blame = origin
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        message = format_validation_error(
            exc, model, params, "", prefix=f"{key}.params", blame=blame
        )
        where = f"{source}: " if source and not message.startswith("--set ") else ""
        raise ConfigError(f"{where}{record.kind} {record.name!r}: {message}") from None


def instantiate(kind: str, ref: PluginRef, key: str, **kwargs: Any) -> Any:
    """Create the plugin ``ref.name`` of ``kind`` with validated ``ref.params``."""
    record = get_registry().get(kind, ref.name)
    params = validate_params(record, ref.params, key, ref.origin)
    return record.cls(params, **kwargs)


def loss_hparams(config: LossConfig) -> list[tuple[HParam, float | Range]]:
    """The loss's declared hyperparameters with the config's fixed values or ranges.

    Returns:
        ``(declared, setting)`` pairs: ``setting`` is a number (fixed) or a Range.

    Raises:
        ConfigError: an override names a hyperparameter the loss does not declare, or a
            fixed value outside the declared range.
    """
    record = get_registry().get("loss", config.name)
    cls: type[LossStrategy] = record.cls
    params = validate_params(record, config.params, "loss", config.origin)
    # Declared per params: a composite loss declares its terms' weights and hparams.
    declared = {hp.name: hp for hp in cls.declared_hyperparameters(params)}
    for name in config.hparams:
        if name not in declared:
            suggestion = closest_match(name, declared)
            hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
            raise ConfigError(
                f"loss.hparams.{name}: loss {config.name!r} has no hyperparameter {name!r}"
                f"{hint}; it has: {', '.join(declared) or 'none'}"
            )
    out: list[tuple[HParam, float | Range]] = []
    for name, hp in declared.items():
        setting = config.hparams.get(name)
        if setting is None and hp.low == hp.high:
            out.append((hp, float(hp.low)))  # a degenerate declared range is a fixed value
        elif setting is None:
            out.append((hp, Range(low=hp.low, high=hp.high, log=hp.log)))
        elif isinstance(setting, Range):
            out.append((hp, setting))
        else:
            value = float(setting)
            if not hp.low <= value <= hp.high:
                raise ConfigError(
                    f"loss.hparams.{name}: {value:g} is outside the range "
                    f"[{hp.low:g}, {hp.high:g}] that loss {config.name!r} allows"
                )
            out.append((hp, value))
    return out


def loss_needs(config: LossConfig) -> LossNeeds:
    """What the configured loss reads from teacher and student (logits, features)."""
    record = get_registry().get("loss", config.name)
    cls: type[LossStrategy] = record.cls
    return cls.needs(validate_params(record, config.params, "loss"))


#: How an error about a loss that does not fit a task names each output kind.
_KIND_WORDS: dict[str, str] = {
    "class_logits": "per-class logits",
    "label_logits": "per-label logits",
    "values": "real-valued predictions",
}


def check_loss_fits_task(
    loss_name: str, loss_params: PluginParams | dict[str, Any] | None, task: Task | str
) -> None:
    """Refuse a loss that cannot read the task's outputs, before anything trains.

    Args:
        loss_name: Registered loss name.
        loss_params: The loss's params (validated, or raw config values).
        task: The task plugin (or its registered name).

    Raises:
        ConfigError: naming the loss, the task and its output kind, with a hint that
            lists the registered losses that do fit the task.
    """
    registry = get_registry()
    record = registry.get("loss", loss_name)
    cls: type[LossStrategy] = record.cls
    if not isinstance(loss_params, PluginParams):
        loss_params = validate_params(record, dict(loss_params or {}), "loss")
    if isinstance(task, str):
        task_name, kind = task, str(registry.get("task", task).cls.output_kind)
    else:
        task_name, kind = task.name, task.output_kind
    takes = cls.supported_output_kinds(loss_params)
    if kind in takes:
        return
    # Losses made for this kind alone first, then the general ones, each by name.
    kinds_of = {r.name: r.cls.supported_output_kinds(None) for r in registry.list("loss")}
    fitting = sorted(
        (name for name, kinds in kinds_of.items() if kind in kinds),
        key=lambda name: (len(kinds_of[name]), name),
    )
    if takes:
        what = " or ".join(_KIND_WORDS.get(k, k) for k in sorted(takes))
    else:
        what = "no output kind at all (its parts have none in common)"
    raise ConfigError(
        f"loss {loss_name!r} does not fit task {task_name!r}: it takes {what}, the task's "
        f"outputs are {_KIND_WORDS.get(kind, kind)} (output kind {kind!r})",
        hint=f"losses for {task_name}: {', '.join(fitting)}"
        if fitting
        else f"no registered loss takes the outputs of task {task_name!r}",
    )


def build_checkpoint_model(payload: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild the model of a loaded checkpoint through its search-space plugin.

    Args:
        payload: A checkpoint read by :func:`kdforge.load_checkpoint`.
        source: Where it came from, for error messages (a file path).

    Raises:
        CheckpointError: the weights do not fit the architecture.
        PluginError: the search space is not installed.
    """
    record = get_registry().get("search_space", str(payload["space"]))
    space = record.cls()
    model = space.build(dict(payload["arch"]), checkpoint_info(payload))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source}: weights do not fit architecture {payload['space']} {payload['arch']}: "
            f"{first_line(exc)}"
        ) from None
    model.eval()
    if payload.get("task"):
        model = rebuild_task(payload["task"], source).with_head(model).eval()
    return model


def rebuild_task(record: dict[str, Any], source: str = "checkpoint") -> Task:
    """The task of a ``Task.record()`` (a checkpoint's, a trial payload's), state restored.

    Raises:
        PluginError: the task plugin is not installed.
        ConfigError: its params no longer validate.
    """
    ref = PluginRef(name=str(record["name"]), params=dict(record.get("params") or {}))
    task: Task = instantiate("task", ref, f"{source}: task")
    task.load_state(dict(record.get("state") or {}))
    return task
