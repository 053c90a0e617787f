"""kdforge's version (the same as the distribution's in pyproject.toml)."""

from __future__ import annotations

__version__ = "0.1.0"
