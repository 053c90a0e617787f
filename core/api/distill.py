"""``kdforge.distill``: a search on the teacher and data a notebook holds.

The in-memory teacher and data become plugin entries the config can name (the
built-in ``in_memory`` teacher and dataset, reached through the plugin registry);
every other argument is a key of the search config, validated by the same models
with the same messages as a YAML file. The search itself is
:func:`kdforge.search.driver.run_search`, the one the ``kdforge search`` command runs
through :func:`run_config` too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kdforge import progress as display
from kdforge.api.result import DistillResult
from kdforge.config import SearchConfig, load_search_config
from kdforge.config.loading import validate_config
from kdforge.data import TaskMetric
from kdforge.errors import ConfigError
from kdforge.plugin_host.manager import get_registry
from kdforge.search.driver import SearchResult, resume_search, run_search

__all__ = ["IN_MEMORY", "distill", "progress_emitter", "resume", "run_config"]

#: The name of the built-in teacher and dataset plugins that hold Python objects.
IN_MEMORY = "in_memory"

#: Tasks whose target form the in-memory dataset reads (a plugin task on other forms
#: passes ``dataset_params={"task": ...}``).
_TARGET_FORMS = ("classification", "regression", "multilabel")


def distill(
    teacher: Any,
    data: Any,
    *,
    transfer: Any = None,
    student: str | Mapping[str, Any] = "cnn",
    loss: str | Mapping[str, Any] | None = None,
    task: str | Mapping[str, Any] | None = None,
    name: str = "distill",
    dataset_params: Mapping[str, Any] | None = None,
    progress: bool = True,
    tracking_uri: str | None = None,
    address: str | None = None,
    **settings: Any,
) -> DistillResult:
    """Search and distil the smallest student that keeps ``teacher``'s accuracy on ``data``.

    Args:
        teacher: An ``nn.Module`` (a Hugging Face model is one), any callable mapping a
            batch of inputs to logits, or a ``teacher:`` config section as a dict
            (``{"name": "checkpoint", "params": {"path": "teacher.pt"}}``).
        data: ``(x, y)`` tensors or arrays; a dict of splits (``train``, ``val``,
            ``test``, ``transfer``); a ``DataLoader`` or map-style ``Dataset`` of
            ``(x, y)``; a ``datasets.Dataset``/``DatasetDict``; or a ``dataset:``
            config section as a dict with a ``name``.
        transfer: Unlabeled inputs the student also learns from (the teacher's soft
            targets only), in any of the forms above without labels.
        student: The student search space: a name (``mlp``, ``cnn``, ``resnet``,
            ``transformer``) or a ``student:`` section (``{"name": ..., "params": ...}``).
        loss: The distillation loss: a name or a ``loss:`` section; None: the task's
            own (``hinton_kd`` for classification, ``regression_kd``, ``multilabel_kd``).
        task: The task: a name (``classification``, ``regression``, ``multilabel``) or a
            ``task:`` section; None: the data's (class ids: classification). In-memory
            ``(x, y)`` data is read in the task's form (``y`` float rows for regression,
            0/1 rows for multilabel).
        name: The search name (folder ``output_dir/NAME/TIMESTAMP``, MLflow runs).
        dataset_params: Split settings of in-memory data (``val_fraction``,
            ``test_fraction``, ``stratify``, ``name``).
        progress: Print progress (False: quiet, as ``kdforge search --quiet``).
        tracking_uri: Overrides ``tracking.uri``.
        address: Ray cluster address; overrides ``search.address``.
        **settings: Any other top-level key of the search config, as in YAML:
            ``search={"num_trials": 8, "epochs": 5}``, ``seed=1``,
            ``output_dir="runs"``, ``baseline={"enabled": False}``, ``export=...``,
            ``tracking=...``, ``selection=...``, ``teacher_cache=...``.

    Returns:
        The result: the student, the leaderboard, metrics, MLflow ids, reports.

    Raises:
        ConfigError, DataError, PluginError: bad settings or data, before anything runs.
        SearchInterrupted: Ctrl-C (a ``KeyboardInterrupt``); :func:`resume` continues.
    """
    task_section = _section(task, "task") if task is not None else None
    raw: dict[str, Any] = {
        "name": name,
        "dataset": _dataset_section(data, transfer, dataset_params, task_section),
        "teacher": _teacher_section(teacher),
        "student": _section(student, "student"),
    }
    if loss is not None:
        raw["loss"] = _section(loss, "loss")
    if task_section is not None:
        raw["task"] = task_section
    clash = sorted(set(settings) & set(raw))
    if clash:
        raise ConfigError(f"kdforge.distill: {clash[0]!r} is given twice")
    raw.update(settings)
    config = validate_config(raw, SearchConfig, source="kdforge.distill")
    return run_config(config, tracking_uri=tracking_uri, address=address, progress=progress)


def run_config(
    config: SearchConfig,
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    progress: bool = True,
    emit: Callable[[str], None] | None = None,
) -> DistillResult:
    """Run the search of a validated config (``kdforge search`` and :func:`distill`).

    Args:
        config: The validated search config.
        tracking_uri: Overrides ``tracking.uri``.
        address: Ray cluster address; overrides ``search.address``.
        progress: Show progress bars and lines (False: nothing, not even results).
        emit: Where progress lines go instead (overrides ``progress``).
    """
    with display.quieted(not progress):
        found = run_search(
            config,
            tracking_uri=tracking_uri,
            address=address,
            emit=emit or progress_emitter(progress),
        )
    return _result(found, config)


def resume(
    search_dir: str | Path,
    *,
    teacher: Any = None,
    data: Any = None,
    transfer: Any = None,
    progress: bool = True,
    tracking_uri: str | None = None,
    address: str | None = None,
    trust_state: bool = False,
) -> DistillResult:
    """Continue an interrupted search (``kdforge resume`` in Python).

    In the process that started it, nothing else is needed. In a new process, pass
    the same in-memory teacher and data again: they are held under the same keys
    (digests of their content), and different objects are refused.

    Args:
        search_dir: The search folder (``SearchInterrupted.search_dir``).
        teacher: The in-memory teacher the search used, when resuming elsewhere.
        data: The in-memory data the search used, when resuming elsewhere.
        transfer: Its transfer data, likewise.
        progress: Print progress lines.
        tracking_uri: Overrides the URI the search used.
        address: Ray cluster address to join.
        trust_state: Let Ray read state files whose digests kdforge did not record
            (``kdforge resume --trust-state``: they may unpickle code).

    Raises:
        ConfigError: the objects given are not the ones the search used.
    """
    folder = Path(search_dir).expanduser().resolve()
    config = load_search_config(folder / "config.yaml")
    if teacher is not None and config.teacher.name == IN_MEMORY:
        _check_same(_teacher_section(teacher), config.teacher.params, "teacher")
    if data is not None and config.dataset.name == IN_MEMORY:
        _check_same(_dataset_section(data, transfer, None), config.dataset.params, "data")
    with display.quieted(not progress):
        found = resume_search(
            folder,
            tracking_uri=tracking_uri,
            address=address,
            emit=progress_emitter(progress),
            trust_state=trust_state,
        )
    return _result(found, config)


def progress_emitter(progress: bool) -> Callable[[str], None]:
    """Where progress lines go: printed (flushed, for notebooks), or nowhere."""
    if not progress:
        return lambda _line: None
    return lambda line: print(line, flush=True)


def _result(found: SearchResult, config: SearchConfig) -> DistillResult:
    return DistillResult(
        search_dir=found.search_dir,
        # As summary.json has it: the metric keys named after the task's metric.
        summary=TaskMetric.of_summary(found.summary).named(found.summary),
        config=config,
        run_id=found.parent_run_id,
    )


def _in_memory_cls(kind: str) -> Any:
    """The built-in ``in_memory`` plugin class of ``kind`` (it holds the objects)."""
    return get_registry().get(kind, IN_MEMORY).cls


def _teacher_section(teacher: Any) -> dict[str, Any]:
    if isinstance(teacher, Mapping):
        return dict(teacher)
    key = _in_memory_cls("teacher").hold(teacher)
    return {"name": IN_MEMORY, "params": {"key": key}}


def _dataset_section(
    data: Any,
    transfer: Any,
    params: Mapping[str, Any] | None,
    task: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    if isinstance(data, Mapping) and "name" in data:
        if transfer is not None or params:
            raise ConfigError(
                "kdforge.distill: transfer/dataset_params come with in-memory data",
                hint="with a dataset config section, set transfer and splits in its params",
            )
        return dict(data)
    key = _in_memory_cls("dataset").hold(data, transfer)
    held = {**dict(params or {}), "key": key}
    if task is not None and "task" not in held and task["name"] in _TARGET_FORMS:
        held["task"] = task["name"]  # the in-memory rows are read in the task's form
    return {"name": IN_MEMORY, "params": held}


def _section(value: str | Mapping[str, Any], where: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(
        f"{where}: expected a plugin name or a {{'name': ..., 'params': ...}} dict, "
        f"got a {type(value).__name__}"
    )


def _check_same(section: dict[str, Any], params: Mapping[str, Any], what: str) -> None:
    given, used = section.get("params", {}).get("key"), params.get("key")
    if given != used:
        raise ConfigError(
            f"kdforge.resume: the {what} given is not the one the search used "
            f"(key {given!r}, the search used {used!r})",
            hint=f"pass the same {what} object (same weights/values) the search started with",
        )
