"""What a search reports: the leaderboard, the Pareto front, plots, report.md/html and
``best_config.yaml``.
"""

from __future__ import annotations

__all__: list[str] = []
