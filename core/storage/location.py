"""Which filesystem a URI lives on, and the endpoint settings of this process.

:func:`configure` is called once per search with the config's ``storage`` section;
until then (``kdforge resume s3://...`` before the config is read) the standard AWS
variables apply: ``AWS_ENDPOINT_URL`` (``AWS_ENDPOINT_URL_S3``) and ``AWS_REGION``
(``AWS_DEFAULT_REGION``). Credentials are never settings: pyarrow reads them from the
environment, a profile or the machine's role, and never pickles them (Ray ships the
filesystem to the trials, whose nodes resolve their own).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kdforge.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs

# pyarrow is imported inside the functions that use it: 0.2 s that `import kdforge`
# (every plugin) should not pay unless a URI is used.
__all__ = [
    "S3_EXTRA",
    "StorageOptions",
    "configure",
    "current_options",
    "filesystem_for",
    "is_remote",
    "join",
    "local_root",
    "slug",
]

#: The install extra that brings what ``s3://`` needs.
S3_EXTRA = "kdforge[s3]"

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class StorageOptions:
    """How to reach the object store (never credentials).

    Attributes:
        endpoint_url: ``http(s)://host:port`` of an S3-compatible store (MinIO, Ceph,
            moto); None: AWS itself, or ``AWS_ENDPOINT_URL``.
        region: The bucket's region; None: ``AWS_REGION``, else pyarrow's default.
        local_dir: Where mirrored folders and downloaded files are kept on this machine.
    """

    endpoint_url: str | None = None
    region: str | None = None
    local_dir: str | None = None


_options = StorageOptions()
_filesystems: dict[tuple[str, StorageOptions], Any] = {}


def configure(options: StorageOptions) -> None:
    """Use ``options`` for every URI this process opens from now on."""
    global _options
    _options = options


def current_options() -> StorageOptions:
    """The options in use (:func:`configure`'s, else the defaults)."""
    return _options


def is_remote(path: str | os.PathLike[str] | None) -> bool:
    """True for a URI of an object store or other non-local filesystem (not ``file://``)."""
    if path is None or not isinstance(path, str):
        return False
    match = _URI.match(path)
    return match is not None and match.group(1).lower() != "file"


def join(uri: str, *parts: str) -> str:
    """``uri/part/...`` with single slashes."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def local_root() -> Path:
    """This machine's folder for mirrors and downloads.

    ``storage.local_dir``, else ``storage/`` in kdforge's user cache folder
    (``$KDFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/kdforge``, else ``~/.cache/kdforge``).
    """
    if _options.local_dir:
        return Path(_options.local_dir).expanduser().resolve()
    if os.environ.get("KDFORGE_CACHE_DIR"):
        root = Path(os.environ["KDFORGE_CACHE_DIR"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "kdforge"
    return (root / "storage").expanduser().resolve()


def slug(uri: str) -> str:
    """A folder name for ``uri``: readable tail plus a short hash of the whole."""
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "-", uri.split("://", 1)[-1]).strip("-")[-60:]
    return f"{tail}-{hashlib.sha256(uri.encode()).hexdigest()[:10]}"


def endpoint() -> str | None:
    """The S3 endpoint in use: ``storage.endpoint_url``, else the AWS variables."""
    return (
        _options.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def filesystem_for(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The pyarrow filesystem holding ``uri`` and the path on it (no scheme).

    ``s3://`` gets an ``S3FileSystem`` with the configured endpoint and region; other
    schemes (``gs://``, ``hdfs://``, ...) are whatever pyarrow resolves them to.

    Raises:
        ConfigError: pyarrow (or its S3 support) is missing, or the URI is not one
            pyarrow can open.
    """
    scheme = uri.split("://", 1)[0].lower()
    key = (scheme, _options)
    path = uri.split("://", 1)[1].strip("/")
    if key not in _filesystems:
        _filesystems[key] = _make_filesystem(uri, scheme)
    return _filesystems[key], path


def _make_filesystem(uri: str, scheme: str) -> Any:
    try:
        import pyarrow.fs as pafs
    except ImportError:
        raise ConfigError(
            f"{uri}: object storage needs pyarrow", hint=f"pip install '{S3_EXTRA}'"
        ) from None
    if scheme not in ("s3", "s3a"):
        try:
            return pafs.FileSystem.from_uri(uri)[0]
        except (OSError, ValueError, ImportError) as exc:
            raise ConfigError(f"{uri}: not a storage URI pyarrow can open ({exc})") from None
    if not hasattr(pafs, "S3FileSystem"):
        raise ConfigError(
            f"{uri}: this pyarrow was built without S3 support", hint=f"pip install '{S3_EXTRA}'"
        )
    kwargs: dict[str, Any] = {
        # A wrong endpoint fails in seconds, not after the SDK's long default retries.
        "connect_timeout": 5,
        "request_timeout": 60,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    url = endpoint()
    if url:
        parsed = urlparse(url if "://" in url else f"https://{url}")
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme
    region = _options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)
