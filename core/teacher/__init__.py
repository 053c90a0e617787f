"""The teacher's side of a search: its outputs, their cache, the online teacher,
and ``kdforge train-teacher``.
"""

from __future__ import annotations

__all__: list[str] = []
