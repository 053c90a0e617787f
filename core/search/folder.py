"""The search folder ``output_dir/NAME/TIMESTAMP`` and the files that describe the search.

``config.yaml`` (the config as run), ``summary.json`` (the result) and ``state.json``
(:class:`SearchState`: the MLflow parent run and how far the search got, which
``kdforge resume`` reads). The other files are written by the steps that make them
(``tune/``, ``leaderboard.csv``, ``student.pt``, ``student.onnx``, reports).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from kdforge.config import SearchConfig
from kdforge.errors import ConfigError, SearchError
from kdforge.search.remote import SEARCHES, sync_search_dir
from kdforge.storage import MARKER, exists, is_remote, join, local_mirror, mirror_path, remote_of

__all__ = [
    "STATE_NAME",
    "SearchState",
    "new_search_dir",
    "remove_if_unstarted",
    "write_config",
    "write_summary",
]

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
        sync_search_dir(Path(search_dir))  # a mirrored folder: the store has it too

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


def new_search_dir(config: SearchConfig) -> Path:
    """Create ``output_dir/name/<timestamp>`` and check it is writable.

    Raises:
        ConfigError: the folder cannot be created or written.
    """
    if is_remote(config.output_dir):
        return _new_remote_search_dir(config)
    root = Path(config.output_dir).resolve() / config.name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = root / stamp
    try:
        root.mkdir(parents=True, exist_ok=True)
        # mkdir is atomic: of two searches started in the same second, the second
        # takes the next suffix instead of failing on the first one's folder.
        for suffix in range(2, 10_000):
            try:
                folder.mkdir()
                break
            except FileExistsError:
                folder = root / f"{stamp}-{suffix}"
        probe = folder / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output_dir: cannot write search folder {folder}: {exc}") from None
    return folder


def _new_remote_search_dir(config: SearchConfig) -> Path:
    """A local mirror of ``output_dir/name/<timestamp>`` on the object store.

    The store is checked beforehand (:func:`kdforge.search.remote.check_storage`).
    """
    root = join(config.output_dir, config.name)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in range(1, 10_000):
        uri = join(root, stamp if suffix == 1 else f"{stamp}-{suffix}")
        # A folder another search took (here or on another machine) is skipped.
        taken = (mirror_path(uri, SEARCHES) / "config.yaml").exists()
        if not taken and not exists(join(uri, "config.yaml"), key="output_dir"):
            break
    folder = local_mirror(uri, SEARCHES)
    (folder / "config.yaml").touch()  # taken: the next search in this second moves on
    return folder


def remove_if_unstarted(search_dir: Path) -> bool:
    """Remove a search folder that holds nothing but its ``config.yaml``.

    A search that fails before it starts (bad data, a teacher that does not load)
    leaves no folder behind; the ``output_dir/NAME`` folder goes too when that leaves
    it empty. A folder with anything else in it is kept (it may be resumed).

    Returns:
        True when the folder was removed.
    """
    folder = Path(search_dir)
    remote = remote_of(folder) is not None  # its files reach the store only once started
    try:
        if {p.name for p in folder.iterdir()} - {"config.yaml", MARKER}:
            return False
        (folder / "config.yaml").unlink(missing_ok=True)
        (folder / MARKER).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        return False
    if not remote:
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # only succeeds when empty
    return True


def write_config(search_dir: Path, config: SearchConfig) -> Path:
    """Write ``config.yaml``: the config as run (``kdforge resume`` reads it back)."""
    path = search_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path


def write_summary(search_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` in the search folder."""
    path = search_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    return path
