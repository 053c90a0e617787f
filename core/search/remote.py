"""A search whose folder, teacher cache or Tune storage is on an object store.

The search folder of ``output_dir: s3://bucket/runs`` is a local mirror
(:func:`kdforge.storage.local_mirror`) of ``s3://bucket/runs/NAME/TIMESTAMP``: kdforge's
own files are written there and uploaded when they are final (each ``state.json``
update, each Tune step for the digest record and journal, and when the run ends),
while Ray Tune writes ``tune/`` (experiment state, trial checkpoints) straight to the
store, from the driver and from every worker. ``kdforge resume s3://...`` downloads
the folder without the checkpoints (:func:`open_search_dir`) and Tune restores from
the store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kdforge.config import SearchConfig
from kdforge.errors import SearchError
from kdforge.storage import (
    check_location,
    configure,
    download_tree,
    filesystem_for,
    is_remote,
    join,
    local_mirror,
    push_folder,
    remote_of,
)

__all__ = [
    "SEARCHES",
    "check_storage",
    "open_search_dir",
    "sync_search_dir",
    "tune_location",
    "tune_storage",
]

#: The local sub-folder (of ``storage.local_dir``) holding mirrored search folders.
SEARCHES = "searches"
# Ray Tune's folder (kdforge.search.tune.TUNE_DIR; not imported: that pulls in Ray).
_TUNE = "tune"


def check_storage(config: SearchConfig) -> None:
    """Use the config's ``storage`` settings; check each remote location before any work.

    Raises:
        ConfigError: a bucket is missing, the endpoint does not answer, or the store
            refuses this process's credentials.
    """
    configure(config.storage.options())
    if is_remote(config.output_dir):
        check_location(config.output_dir, "output_dir", write=True)
    cache = config.teacher_cache
    if cache.enabled and cache.dir and is_remote(cache.dir):
        check_location(cache.dir, "teacher_cache.dir", write=True)


def sync_search_dir(search_dir: Path) -> None:
    """Upload what changed in a mirrored search folder (``tune/`` is Tune's own)."""
    push_folder(search_dir, skip=(_TUNE,))


def open_search_dir(search_dir: str | Path) -> Path:
    """The local search folder of ``search_dir``: a path, a URI, or a mirror of one.

    A URI (or a local mirror, which is refreshed) is downloaded without the trial
    checkpoints: kdforge's files and Tune's state files, which ``kdforge resume``
    checks against their recorded digests before Ray restores from the store.

    Raises:
        SearchError: the URI holds no search folder.
        ConfigError: the store cannot be used.
    """
    text = str(search_dir)
    uri = text.rstrip("/") if is_remote(text) else remote_of(Path(text))
    if uri is None:
        return Path(search_dir).resolve()
    folder = local_mirror(uri, SEARCHES)
    shutil.rmtree(folder / _TUNE, ignore_errors=True)  # only what the store holds now
    found = download_tree(uri, folder, keep=_needed_on_resume, key="search folder")
    if not found:
        raise SearchError(
            f"{uri} holds no kdforge search folder",
            hint="pass the URI printed by `kdforge search` (output_dir/NAME/TIMESTAMP), "
            "and set AWS_ENDPOINT_URL when the store is not AWS",
        )
    return folder


def _needed_on_resume(relative: str) -> bool:
    parts = relative.split("/")
    if parts[0] != _TUNE:
        return True
    # Tune's state files (what the digest check reads), not the trial checkpoints.
    return len(parts) == 2 or relative.endswith(".pkl")


def tune_location(tune_dir: Path) -> tuple[str, Any]:
    """Where Ray Tune keeps ``SEARCH_DIR/tune``: a local path, or a path and its filesystem.

    Returns:
        ``(path, None)`` for a local folder; ``(bucket/prefix/tune, filesystem)`` when the
        search folder mirrors an object store (Tune's ``storage_filesystem`` form).
    """
    uri = remote_of(tune_dir.parent)
    if uri is None:
        return str(tune_dir), None
    filesystem, path = filesystem_for(join(uri, tune_dir.name))
    return path, filesystem


def tune_storage(search_dir: Path) -> tuple[str, Any]:
    """Ray Tune's ``storage_path`` and ``storage_filesystem`` for a search folder.

    Returns:
        ``(search_dir, None)`` for a local folder; ``(bucket/prefix, filesystem)`` for a
        mirror, so that Tune writes ``tune/`` to the store from the driver and workers.
    """
    uri = remote_of(search_dir)
    if uri is None:
        return str(search_dir), None
    filesystem, path = filesystem_for(uri)
    return path, filesystem
