"""MLflow: the store, journaled trial tracking, run metadata, the Model Registry,
promotion and the registered model's description.
"""

from __future__ import annotations

__all__: list[str] = []
