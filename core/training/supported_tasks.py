"""Which tasks the search and the teacher trainer run end to end.

Every step follows a :class:`~kdforge.interfaces.Task` whose outputs are one row per
example of a kind in :data:`~kdforge.interfaces.OUTPUT_KINDS`. A task that declares
another output kind (per-position outputs, for instance) is refused before anything
runs, with one line instead of a shape error deep in a trial.
"""

from __future__ import annotations

from kdforge.errors import ConfigError
from kdforge.interfaces import OUTPUT_KINDS, Task

__all__ = ["require_workflow_task"]


def require_workflow_task(task: Task, dataset: str, command: str) -> None:
    """Refuse a task whose outputs the workflow does not handle.

    Args:
        task: The resolved task.
        dataset: The dataset's name in the config, for the message.
        command: ``"kdforge search"`` or ``"kdforge train-teacher"``.

    Raises:
        ConfigError: ``task.output_kind`` is not one of :data:`OUTPUT_KINDS`.
    """
    if task.output_kind in OUTPUT_KINDS:
        return
    raise ConfigError(
        f"task {task.name!r} (dataset {dataset!r}) gives outputs of kind "
        f"{task.output_kind!r}, and {command} handles {', '.join(OUTPUT_KINDS)} only",
        hint="use a task with one output row per example",
    )
