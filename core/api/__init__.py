"""The Python API: distil the teacher and data a notebook already holds.

:func:`distill` runs a search on in-memory objects (or on config sections) and returns
a :class:`DistillResult`; :func:`resume` continues an interrupted one;
:func:`load_student` rebuilds a searched student as a PyTorch module. The ``kdforge
search`` command runs through the same :func:`run_config`.
"""

from __future__ import annotations

from kdforge.api.distill import distill, resume, run_config
from kdforge.api.result import DistillResult
from kdforge.api.student import load_student
from kdforge.search.interrupt import SearchInterrupted

__all__ = ["DistillResult", "SearchInterrupted", "distill", "load_student", "resume", "run_config"]
