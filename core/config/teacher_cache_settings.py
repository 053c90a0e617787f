"""The ``teacher_cache`` section of a search config (see :mod:`kdforge.teacher.cache`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TeacherCacheSettings"]


class TeacherCacheSettings(BaseModel):
    """Where and how the teacher's outputs are cached between searches."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Reuse teacher outputs across searches (off: recompute every search)."
    )
    dir: str | None = Field(
        None,
        description="Cache folder (default: <output_dir>/.teacher-cache; e.g. ~/.cache/kdforge "
        "to share it between projects).",
    )
    mode: Literal["cache", "online"] = Field(
        "cache",
        description="cache: compute the teacher's training outputs once (stored per "
        "`enabled`); online: no stored training outputs, the teacher runs on every training "
        "batch inside the trials (corpora too big to store; val/test outputs are still "
        "computed once).",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32",
        description="Storage type of cached logits and features (float16/bfloat16 halve "
        "disk; bfloat16 is stored as uint16 bit patterns).",
    )
    top_k: int | None = Field(
        None,
        ge=1,
        description="Keep only the k largest logits per row (many-class problems); the other "
        "classes share the remaining probability mass. Per-position logits (language "
        "models): the k largest per position plus the log-sum-exp over the vocabulary, read "
        "sparse by losses that support it (lm_kd).",
    )
    share: Literal["auto", "memmap", "object_store"] = Field(
        "auto",
        description="How trials get the outputs: memmap (read the cache files, no copy per "
        "trial; needs the folder on every node), object_store (Ray, once), auto (memmap "
        "without search.address, else object_store).",
    )
