"""Files between this machine and an object store.

Datasets are downloaded once per object version (:func:`cached_copy`, keyed by the
object's size and modification time); trial checkpoints Ray Tune wrote to the store
are downloaded when the driver loads one (:func:`local_checkpoint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge.errors import DataError
from kdforge.storage.access import storage_error
from kdforge.storage.location import filesystem_for, is_remote, join, local_root, slug

# pyarrow is imported inside the functions that use it: 0.2 s that `import kdforge`
# (every plugin) should not pay unless a URI is used.
__all__ = [
    "cached_copy",
    "checkpoint_location",
    "download_tree",
    "exists",
    "local_checkpoint",
    "upload_tree",
]


def exists(uri: str, key: str = "path") -> bool:
    """True when ``uri`` names an existing object or folder.

    Raises:
        ConfigError: the store cannot be used (bucket, endpoint, credentials).
    """
    import pyarrow.fs as pafs

    fs, path = filesystem_for(uri)
    try:
        return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)
    except OSError as exc:
        raise storage_error(exc, uri, key) from None


def _download_file(fs: Any, path: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with fs.open_input_stream(path) as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        os.replace(partial, target)  # readers never see half a file
    finally:
        partial.unlink(missing_ok=True)


def cached_copy(uri: str, where: str) -> Path:
    """A local copy of the object ``uri``, downloaded once per version of the object.

    The copy lives in ``<local_dir>/objects/<uri>/<size>-<mtime>/<name>``: a changed
    object (other size or time) is downloaded again, an unchanged one never.

    Args:
        uri: The object (``s3://bucket/data/train.npz``).
        where: What it is, for errors (``dataset 'arrays' (path=...): path``).

    Raises:
        DataError: no such object.
        ConfigError: the store cannot be used (bucket, endpoint, credentials).
    """
    import pyarrow.fs as pafs

    fs, path = filesystem_for(uri)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise storage_error(exc, uri, where) from None
    if info.type != pafs.FileType.File:
        raise DataError(f"{where}: {uri} does not exist (or is a folder)")
    stamp = info.mtime_ns if info.mtime_ns is not None else 0
    version = hashlib.sha256(f"{info.size}-{stamp}".encode()).hexdigest()[:12]
    target = local_root() / "objects" / slug(uri) / version / path.rsplit("/", 1)[-1]
    if not target.is_file() or target.stat().st_size != info.size:
        try:
            _download_file(fs, path, target)
        except OSError as exc:
            raise storage_error(exc, uri, where) from None
    return target


def download_tree(
    uri: str,
    target: Path,
    *,
    keep: Callable[[str], bool] = lambda _: True,
    key: str = "path",
    recursive: bool = True,
) -> int:
    """Download every file under ``uri`` (``recursive``: at any depth) that ``keep`` accepts.

    Returns:
        How many files were downloaded.

    Raises:
        ConfigError: the store cannot be used.
    """
    import pyarrow.fs as pafs

    fs, root = filesystem_for(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=recursive, allow_not_found=True))
        count = 0
        for info in infos:
            relative = info.path[len(root) :].lstrip("/")
            if info.type == pafs.FileType.File and keep(relative):
                _download_file(fs, info.path, target / relative)
                count += 1
    except OSError as exc:
        raise storage_error(exc, uri, key) from None
    return count


def upload_tree(
    folder: Path, uri: str, files: list[Path] | None = None, *, key: str = "output_dir"
) -> None:
    """Upload ``files`` (default: every file) under ``folder`` to the same paths under ``uri``.

    Raises:
        ConfigError: the store cannot be used.
    """
    fs, root = filesystem_for(uri)
    chosen = files if files is not None else [p for p in folder.rglob("*") if p.is_file()]
    try:
        for file in chosen:
            relative = file.relative_to(folder).as_posix()
            with open(file, "rb") as source, fs.open_output_stream(f"{root}/{relative}") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
    except OSError as exc:
        raise storage_error(exc, join(uri), key) from None


def checkpoint_location(checkpoint: Any) -> str:
    """A Ray ``Checkpoint``'s place as a string: its path, or a URI when it is remote."""
    fs = checkpoint.filesystem
    if fs is None or fs.type_name == "local":
        return str(checkpoint.path)
    scheme = {"gcs": "gs"}.get(fs.type_name, fs.type_name)
    return f"{scheme}://{checkpoint.path}"


def local_checkpoint(location: str | os.PathLike[str]) -> Path:
    """A trial checkpoint folder on this machine: itself, or its download.

    Ray Tune writes checkpoints once and never changes them, so a download is kept.
    """
    if not is_remote(str(location)):
        return Path(location)
    uri = str(location)
    target = local_root() / "checkpoints" / slug(uri)
    if not (target / ".complete").exists():
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target)
        download_tree(uri, target, key="checkpoint")
        (target / ".complete").write_text(uri)
    return target
