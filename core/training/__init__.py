"""Training one model: the trainer loop and kdforge's checkpoint file."""

from __future__ import annotations

__all__: list[str] = []
