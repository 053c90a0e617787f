"""The search: plan, driver, Ray Tune trials, sampler, callbacks and the steps after them."""

from __future__ import annotations

__all__: list[str] = []
