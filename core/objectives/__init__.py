"""What a student costs and what it may cost: parameters, MACs, size, latency,
constraints, and the objective step after the trials.
"""

from __future__ import annotations

__all__: list[str] = []
