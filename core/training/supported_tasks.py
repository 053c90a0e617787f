"""Which tasks the search and the teacher trainer run end to end.

Every step follows a :class:`~kdforge.interfaces.Task` whose outputs are of a kind in
:data:`~kdforge.interfaces.OUTPUT_KINDS` (one row per example, or one per input
position for ``token_logits``). A task that declares another output kind is refused
before anything runs, with one line instead of a shape error deep in a trial; so is a
search space that cannot give per-position outputs for per-position data.
"""

from __future__ import annotations

from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.interfaces import OUTPUT_KINDS, SearchSpace, Task

__all__ = ["require_causal_space", "require_space_outputs", "require_workflow_task"]


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
        hint=f"use a task whose output_kind is one of {', '.join(OUTPUT_KINDS)}",
    )


def require_space_outputs(space: SearchSpace, info: DataInfo, where: str) -> None:
    """Refuse a space that cannot give the per-position outputs the data asks for.

    Args:
        space: The student (or teacher architecture) search space.
        info: The data; :attr:`DataInfo.per_position` for token tagging.
        where: Names the config key, for the message (``student space 'mlp'``).

    Raises:
        ConfigError: per-position data and a space without :attr:`SearchSpace.per_position`.
    """
    if not info.per_position or space.per_position:
        return
    raise ConfigError(
        f"{where}: task {info.task!r} needs one output row per input position "
        f"(n, seq_len, {info.num_classes}), and space {space.name!r} gives one row per example",
        hint="use the `transformer` space, which tags every position of a token sequence",
    )


def require_causal_space(task: Task, space: SearchSpace, where: str) -> None:
    """Refuse a space whose positions see later ones when the task predicts the next token.

    Args:
        task: The task (:meth:`Task.needs_causal_student`).
        space: The student (or teacher architecture) search space.
        where: Names the config key, for the message (``student space 'transformer'``).

    Raises:
        ConfigError: a causal task and a space without :attr:`SearchSpace.causal`.
    """
    # An instance may decide from its params (hf_lm: the teacher's family).
    if not task.needs_causal_student() or getattr(space, "causal", False):
        return
    raise ConfigError(
        f"{where}: task {task.name!r} predicts the next token, and space {space.name!r} "
        "lets every position see the later ones (it would read its answer)",
        hint="use task params mode: masked with this space, or a causal space",
    )
