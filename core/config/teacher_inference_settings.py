"""The ``teacher_inference`` section of a search config (see :mod:`kdforge.teacher.inference`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TeacherInferenceSettings"]


class TeacherInferenceSettings(BaseModel):
    """Where the teacher's outputs are computed when they are not cached."""

    model_config = ConfigDict(extra="forbid")

    where: Literal["auto", "local", "ray"] = Field(
        "auto",
        description="local: in the search process; ray: as a Ray job, sharded over teacher "
        "actors on the cluster's workers (GPUs when it has them); auto: ray when the search "
        "joins a cluster (search.address or RAY_ADDRESS), else local.",
    )
    batch_size: int = Field(
        512,
        ge=1,
        description="Rows per teacher call, on both paths (the same batches give "
        "the same outputs bit for bit).",
    )
    actors: int | None = Field(
        None,
        ge=1,
        description="Teacher actors of a Ray job (default: as many as the cluster's GPUs, or "
        "CPUs without GPUs, allow at the resources below; at most one per shard).",
    )
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs each teacher actor reserves.")
    gpus_per_actor: float | None = Field(
        None,
        ge=0,
        description="GPUs each teacher actor reserves (fractions share one GPU); default: 1 "
        "when the cluster has GPUs, else 0. An actor with a GPU runs the teacher on it.",
    )
