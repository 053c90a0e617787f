"""Where work runs: joining a Ray cluster or starting a local Ray, one way for every command."""

from __future__ import annotations

__all__: list[str] = []
