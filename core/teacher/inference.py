"""Where the teacher's outputs are computed when they are not cached: here, or on Ray.

``teacher_inference.where`` decides (:class:`~kdforge.config.teacher_inference_settings.
TeacherInferenceSettings`): ``local`` runs
:func:`~kdforge.teacher.outputs.compute_teacher_outputs` in the search process (as every
search on one machine does), ``ray`` runs :func:`~kdforge.teacher.ray_job.run_teacher_job`
on the Ray cluster's workers, and ``auto`` picks ``ray`` only when the search joins a
cluster. Both batch the rows the same way, so they give the same outputs bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from kdforge.config import PluginRef
from kdforge.config.teacher_inference_settings import TeacherInferenceSettings
from kdforge.data import DataSplits
from kdforge.errors import SearchError
from kdforge.interfaces import LossNeeds, Teacher
from kdforge.teacher.outputs import TeacherOutputs, compute_teacher_outputs
from kdforge.teacher.ray_job import PROCESS_LOCAL_TEACHERS, RayJobReport, run_teacher_job

__all__ = ["TeacherInference", "inference_place"]


def inference_place(
    settings: TeacherInferenceSettings, *, on_cluster: bool, teacher: Teacher | None = None
) -> Literal["local", "ray"]:
    """``teacher_inference.where`` with ``auto`` decided: ``ray`` on a cluster, else local.

    ``auto`` keeps a process-local teacher (``in_memory``: an object of this process,
    possibly a plain function) local; only ``where: ray`` sends it to the workers.
    """
    if settings.where != "auto":
        return settings.where
    if teacher is not None and teacher.name in PROCESS_LOCAL_TEACHERS:
        return "local"
    return "ray" if on_cluster else "local"


class TeacherInference:
    """Computes the teacher's outputs where ``teacher_inference`` says.

    Args:
        settings: The ``teacher_inference`` section (default: its defaults, i.e. local
            on one machine with 512-row batches).
        teacher_ref: The ``teacher:`` config section, which Ray workers rebuild the
            teacher from (None: the loaded teacher object is sent instead).
        on_cluster: The search joins a Ray cluster (``search.address`` or
            ``RAY_ADDRESS``); decides ``where: auto``.
        ray_ready: Called before the Ray path uses Ray, to wait until it is up (the
            search starts Ray in the background); None when Ray is already initialised.

    Attributes:
        last_job: What the last Ray job did (None after a local run).
    """

    def __init__(
        self,
        settings: TeacherInferenceSettings | None = None,
        *,
        teacher_ref: PluginRef | None = None,
        on_cluster: bool = False,
        ray_ready: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings or TeacherInferenceSettings.model_validate({})
        self.teacher_ref = teacher_ref
        self.on_cluster = on_cluster
        self.ray_ready = ray_ready
        self.last_job: RayJobReport | None = None

    def place(self, teacher: Teacher | None = None) -> Literal["local", "ray"]:
        """``local`` or ``ray``: where the outputs of ``teacher`` are computed."""
        return inference_place(self.settings, on_cluster=self.on_cluster, teacher=teacher)

    def __call__(
        self,
        teacher: Teacher,
        splits: DataSplits,
        *,
        needs: LossNeeds | None = None,
        emit: Callable[[str], None] | None = None,
        top_k: int | None = None,
    ) -> TeacherOutputs:
        """The teacher's outputs on every split (see :class:`TeacherOutputs`).

        ``top_k``: per-position logits kept as their top k per position while computed
        (local path; see :func:`~kdforge.teacher.outputs.compute_teacher_outputs`); the
        Ray path returns dense outputs, which the cache encodes.

        Raises:
            SearchError: the Ray path was chosen but Ray is not running.
            PluginError: see :func:`~kdforge.teacher.ray_job.run_teacher_job`.
        """
        self.last_job = None
        if self.place(teacher) == "local":
            return compute_teacher_outputs(
                teacher, splits, self.settings.batch_size, needs=needs, emit=emit, top_k=top_k
            )
        if self.ray_ready is not None:
            self.ray_ready()
        # Ray is imported here: only the Ray path needs it (not the local one).
        import ray

        if not ray.is_initialized():
            raise SearchError(
                "teacher_inference.where: ray, but Ray is not running in this process",
                hint="call ray.init() first, or set teacher_inference.where: local",
            )
        say = emit or print
        say("teacher outputs: computed as a Ray job on the cluster's workers")
        outputs, self.last_job = run_teacher_job(
            teacher, splits, self.settings, teacher_ref=self.teacher_ref, needs=needs, emit=say
        )
        return outputs
