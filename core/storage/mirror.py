"""Local folders that mirror a folder of an object store.

A search folder or a teacher cache at ``s3://...`` is worked on in a local folder
(``<local_dir>/<kind>/<slug>``) whose marker file names the URI it mirrors. Files are
uploaded when they are final (:func:`push_folder` sends only what changed since the last
push); a teacher cache entry is downloaded when the store has it (:func:`pull_entry`) and
uploaded once written (:func:`push_entry`, ``meta.json`` last, so a half-uploaded entry
is never taken for a complete one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from kdforge.storage.location import join, local_root, slug
from kdforge.storage.transfer import download_tree, exists, upload_tree

__all__ = [
    "MARKER",
    "display",
    "local_mirror",
    "mirror_path",
    "pull_entry",
    "push_entry",
    "push_folder",
    "remote_of",
]

#: The file in a mirror folder that names the URI it mirrors (never uploaded).
MARKER = ".kdforge-remote"
_ENTRY_LAST = "meta.json"

# What each folder's last push sent: (size, mtime) by file.
_pushed: dict[Path, dict[Path, tuple[int, int]]] = {}


def mirror_path(uri: str, kind: str) -> Path:
    """Where :func:`local_mirror` keeps ``uri`` (not created)."""
    return local_root() / kind / slug(uri)


def local_mirror(uri: str, kind: str) -> Path:
    """The local folder mirroring ``uri`` (created, with its marker).

    Args:
        uri: The remote folder.
        kind: ``searches`` or ``teacher-cache``: a sub-folder of the local root.
    """
    folder = mirror_path(uri, kind)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(uri)
    return folder


def remote_of(folder: str | os.PathLike[str]) -> str | None:
    """The URI a local folder mirrors, or None for a plain local folder."""
    marker = Path(folder) / MARKER
    try:
        return marker.read_text().strip() or None
    except OSError:
        return None


def display(folder: str | os.PathLike[str]) -> str:
    """How to name a folder to the user: its URI when it mirrors one."""
    return remote_of(folder) or str(folder)


def push_folder(folder: Path, *, skip: tuple[str, ...] = ()) -> int:
    """Upload the files of a mirror folder that changed since its last push.

    Args:
        folder: A local mirror (a plain folder is left alone).
        skip: Top-level names not to upload (``tune``: Ray Tune writes it itself).

    Returns:
        How many files were uploaded.

    Raises:
        ConfigError: the store cannot be used.
    """
    uri = remote_of(folder)
    if uri is None:
        return 0
    sent = _pushed.setdefault(folder, {})
    changed: list[Path] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if (
            not path.is_file()
            or relative.parts[0] in skip
            or path.name == MARKER
            or path.suffix in {".tmp", ".part"}
        ):
            continue
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        if sent.get(path) != stamp:
            changed.append(path)
            sent[path] = stamp
    if changed:
        upload_tree(folder, uri, changed)
    return len(changed)


def pull_entry(entry: Path) -> bool:
    """Download the cache entry ``entry`` from the store its parent mirrors, if there.

    Returns:
        True when the entry is now on this machine.
    """
    uri = remote_of(entry.parent)
    if uri is None:
        return False
    remote = join(uri, entry.name)
    if not exists(join(remote, _ENTRY_LAST), key="teacher_cache.dir"):
        return False
    partial = entry.parent / f".pull-{entry.name}-{uuid.uuid4().hex[:8]}"
    try:
        download_tree(remote, partial, key="teacher_cache.dir")
        with contextlib.suppress(OSError):  # another search pulled it first: as good
            os.replace(partial, entry)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return (entry / _ENTRY_LAST).is_file()


def push_entry(entry: Path) -> None:
    """Upload a complete cache entry to the store its parent mirrors (``meta.json`` last)."""
    uri = remote_of(entry.parent)
    if uri is None:
        return
    files = sorted(p for p in entry.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == _ENTRY_LAST)
    upload_tree(entry, join(uri, entry.name), files, key="teacher_cache.dir")
