"""The small state file of a search folder (``state.json``), for ``kdforge resume``.

It records the MLflow parent run (so a resumed search continues it rather than
starting another) and how far the search got.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kdforge.errors import SearchError

__all__ = ["STATE_NAME", "SearchState"]

STATE_NAME = "state.json"


@dataclass
class SearchState:
    """Where a search stands.

    Attributes:
        parent_run_id: The MLflow parent run of the search.
        experiment_id: Its MLflow experiment.
        tracking_uri: The tracking URI it logged to.
        phase: ``tuning``, ``finalizing`` or ``done``.
    """

    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    phase: str = "tuning"

    def save(self, search_dir: Path) -> None:
        """Write ``state.json`` atomically."""
        target = Path(search_dir) / STATE_NAME
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(target)

    @classmethod
    def load(cls, search_dir: Path) -> SearchState:
        """Read ``state.json`` of a search folder.

        Raises:
            SearchError: the folder is not a kdforge search folder.
        """
        path = Path(search_dir) / STATE_NAME
        if not path.exists():
            raise SearchError(
                f"{search_dir} is not a resumable kdforge search folder (no {STATE_NAME})",
                hint="pass the folder printed by `kdforge search` (output_dir/NAME/TIMESTAMP)",
            )
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise SearchError(f"{path} is corrupt: {exc}") from None
