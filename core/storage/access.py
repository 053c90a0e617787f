"""One-line errors for an object store that cannot be used, checked before any work.

A missing bucket, an endpoint that does not answer and credentials the store refuses
each become a :class:`~kdforge.errors.ConfigError` that names the URI, the config key
and what to change, instead of an SDK traceback after the teacher has run.
"""

from __future__ import annotations

import uuid

from kdforge.errors import ConfigError, first_line
from kdforge.storage.location import endpoint, filesystem_for

# pyarrow is imported inside the functions that use it: 0.2 s that `import kdforge`
# (every plugin) should not pay unless a URI is used.
__all__ = ["check_location", "storage_error"]

_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Could not connect", "resolve host", "timed out")
_REFUSED = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "credentials",
    "HTTP status 403",
)
_CREDENTIALS_HINT = (
    "give this process credentials the store accepts: AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or the machine's role (never in the config)"
)


def storage_error(exc: BaseException, uri: str, key: str) -> ConfigError:
    """The one-line error for ``exc``, raised while using ``uri`` (config key ``key``)."""
    text = str(exc)
    where = endpoint() or "the default AWS endpoint"
    if (
        "NO_SUCH_BUCKET" in text
        or "NoSuchBucket" in text
        or ("Bucket" in text and "not found" in text)
    ):
        return _missing_bucket(uri, key, where)
    if any(marker in text for marker in _UNREACHABLE):
        return ConfigError(
            f"{key}: cannot reach the object store at {where} for {uri}",
            hint="set storage.endpoint_url (or AWS_ENDPOINT_URL) to the store's "
            "http(s)://host:port, and check it is up and reachable from here",
        )
    if any(marker in text for marker in _REFUSED):
        return ConfigError(
            f"{key}: the object store at {where} refused access to {uri}",
            hint=_CREDENTIALS_HINT,
        )
    return ConfigError(f"{key}: cannot use {uri}: {first_line(exc)}")


def _missing_bucket(uri: str, key: str, where: str) -> ConfigError:
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    return ConfigError(
        f"{key}: bucket {bucket!r} of {uri} does not exist at {where}",
        hint=f"create the bucket, or fix {key} (and storage.endpoint_url if it is another store)",
    )


def check_location(uri: str, key: str, *, write: bool = False) -> None:
    """Check that ``uri``'s bucket exists, answers and (``write``) takes new objects.

    Args:
        uri: A remote URI (``s3://bucket/prefix``).
        key: The config key it came from, for the message.
        write: Also write and delete a probe object under ``uri``.

    Raises:
        ConfigError: the bucket is missing, the endpoint does not answer, or the store
            refuses this process's credentials.
    """
    import pyarrow.fs as pafs

    fs, path = filesystem_for(uri)
    bucket = path.split("/", 1)[0]
    try:
        if fs.type_name == "s3" and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise _missing_bucket(uri, key, endpoint() or "the default AWS endpoint")
        if write:
            probe = f"{path}/.kdforge-write-probe-{uuid.uuid4().hex[:8]}"
            with fs.open_output_stream(probe) as stream:
                stream.write(b"")
            fs.delete_file(probe)
    except OSError as exc:
        raise storage_error(exc, uri, key) from None
