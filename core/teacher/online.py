"""Running the teacher inside the training loop, for randomly augmented training data.

Cached teacher outputs belong to the *unaugmented* inputs; with a random training
augmentation every batch is new, so the soft targets must come from the teacher on
that very batch. :class:`OnlineTeacher` is the callable the trainer then uses instead
of cached rows: it pickles as the teacher's plugin class and params (not its weights)
and loads the teacher once per process (the files must be readable there).
"""

from __future__ import annotations

from typing import Any

import torch

from kdforge.interfaces import LossNeeds, ModelOutput, Teacher

__all__ = ["OnlineTeacher"]


class OnlineTeacher:
    """Teacher outputs for one training batch, computed on demand (no gradients).

    Args:
        teacher: The teacher (reused as is in this process when already loaded).
        needs: What the loss reads (features of ``teacher_layers`` when it needs them).
    """

    def __init__(self, teacher: Teacher, needs: LossNeeds | None = None) -> None:
        self.teacher_cls = type(teacher)
        self.params = teacher.params
        self.needs = needs or LossNeeds()
        self.calls = 0
        self._teacher: Teacher | None = teacher

    def _loaded(self) -> Teacher:
        if self._teacher is None:
            teacher = self.teacher_cls(self.params)
            teacher.load()
            self._teacher = teacher
        return self._teacher

    def __call__(self, batch: torch.Tensor) -> ModelOutput:
        """The teacher's logits (and needed features) for ``batch``, as float32."""
        teacher = self._loaded()
        self.calls += 1
        with torch.no_grad():
            if self.needs.features:
                out = teacher.predict_features(batch, self.needs.teacher_layers)
            else:
                out = teacher.predict(batch)
        logits = out.logits.detach().float() if out.logits is not None else None
        return ModelOutput(logits, {k: v.detach().float() for k, v in out.features.items()})

    def __getstate__(self) -> dict[str, Any]:
        # The loaded model stays behind: each trial process loads its own copy once.
        state = dict(self.__dict__)
        state["_teacher"] = None
        return state
