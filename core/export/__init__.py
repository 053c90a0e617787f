"""Shipping the chosen student: export through the exporter plugin, and int8 quantization."""

from __future__ import annotations

__all__: list[str] = []
