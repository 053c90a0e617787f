"""Which tasks the search and the teacher trainer take so far.

The trainer and evaluation follow any :class:`~kdforge.interfaces.Task`; the search's
reports, selection, baseline, export and serving still speak of accuracy, so a dataset
whose targets are for another task is refused before anything runs, with a clear
message instead of a torch shape error deep in a trial.
"""

from __future__ import annotations

from kdforge.data import DataInfo
from kdforge.errors import ConfigError

__all__ = ["WORKFLOW_TASKS", "require_workflow_task"]

#: Tasks that ``kdforge search`` and ``kdforge train-teacher`` run end to end.
WORKFLOW_TASKS: tuple[str, ...] = ("classification",)


def require_workflow_task(info: DataInfo, dataset: str, command: str) -> None:
    """Refuse data made for a task the workflow does not run end to end yet.

    Args:
        info: The loaded data's description (``info.task``).
        dataset: The dataset's name in the config, for the message.
        command: ``"kdforge search"`` or ``"kdforge train-teacher"``.

    Raises:
        ConfigError: ``info.task`` is not in :data:`WORKFLOW_TASKS`.
    """
    if info.task in WORKFLOW_TASKS:
        return
    raise ConfigError(
        f"dataset {dataset!r} gives {info.task} targets, and {command} runs "
        f"{', '.join(WORKFLOW_TASKS)} only in this version",
        hint="give the dataset one class column (e.g. tabular's `target`); train and "
        f"score a {info.task} model with kdforge.training.trainer.train_model(task=...)",
    )
