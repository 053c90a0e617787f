"""Object storage (``s3://``, ``gs://``, ...) wherever a search keeps state.

A search, the teacher cache and file datasets accept a URI where they accept a folder
or a file. Their files are read and written in a local folder and mirrored to the
object store (:mod:`~kdforge.storage.mirror`); datasets are downloaded once
(:func:`~kdforge.storage.transfer.cached_copy`); Ray Tune writes to the store itself.
The endpoint and region come from the config's ``storage`` section
(:func:`~kdforge.storage.location.configure`) or the standard AWS variables;
credentials only ever from the environment (``AWS_ACCESS_KEY_ID``, a profile, a role).

This package is part of the face: dataset plugins call :func:`cached_copy`. It imports
pyarrow only inside the functions that need it, so ``import kdforge`` stays light.
"""

from __future__ import annotations

from kdforge.storage.access import check_location
from kdforge.storage.location import (
    S3_EXTRA,
    StorageOptions,
    configure,
    current_options,
    filesystem_for,
    is_remote,
    join,
    local_root,
)
from kdforge.storage.mirror import (
    MARKER,
    display,
    local_mirror,
    mirror_path,
    pull_entry,
    push_entry,
    push_folder,
    remote_of,
)
from kdforge.storage.transfer import (
    cached_copy,
    checkpoint_location,
    download_tree,
    exists,
    local_checkpoint,
    upload_tree,
)

__all__ = [
    "MARKER",
    "S3_EXTRA",
    "StorageOptions",
    "cached_copy",
    "check_location",
    "checkpoint_location",
    "configure",
    "current_options",
    "display",
    "download_tree",
    "exists",
    "filesystem_for",
    "is_remote",
    "join",
    "local_checkpoint",
    "local_mirror",
    "local_root",
    "mirror_path",
    "pull_entry",
    "push_entry",
    "push_folder",
    "remote_of",
    "upload_tree",
]
